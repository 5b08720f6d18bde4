//! Who is calling: API keys now, users and their unit scope later.

pub mod api_key;
