// figment's `Jail` closures return its (large) error type; that is its API, not ours.
#![allow(clippy::result_large_err)]

use super::*;
use figment::Jail;

fn load_in(jail: &Jail, explicit: Option<&str>) -> Result<Config, ConfigError> {
    let source = ConfigSource::from_cli(explicit.map(|p| jail.directory().join(p)));
    let source = if explicit.is_none() {
        ConfigSource {
            path: jail.directory().join(DEFAULT_CONFIG_PATH),
            ..source
        }
    } else {
        source
    };
    Config::load(&source)
}

fn error_of(result: Result<Config, ConfigError>) -> String {
    result
        .expect_err("the configuration should be refused")
        .to_string()
}

#[test]
fn no_file_and_no_environment_gives_the_documented_defaults() {
    Jail::expect_with(|jail| {
        let config = load_in(jail, None).unwrap();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database.url.expose(), "sqlite://hearback.db");
        assert_eq!(config.jobs.concurrency, 4);
        assert_eq!(config.log.format, LogFormat::Text);
        let channels = config.effective_channels();
        assert_eq!(channels.len(), 1);
        assert_eq!(channels[&ChannelName::console()].provider(), "console");
        Ok(())
    });
}

#[test]
fn environment_variables_override_the_file() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "hearback.toml",
            "[server]\nlisten = \"0.0.0.0:9000\"\n[jobs]\nconcurrency = 2\n",
        )?;
        jail.set_env("HEARBACK_SERVER__LISTEN", "127.0.0.1:9100");
        jail.set_env("HEARBACK_CHANNELS__DEV__PROVIDER", "console");
        let config = load_in(jail, None).unwrap();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(config.jobs.concurrency, 2);
        assert!(
            config
                .channels
                .contains_key(&ChannelName::parse("dev").unwrap())
        );
        Ok(())
    });
}

#[test]
fn the_database_url_alias_wins_over_the_file_and_the_key() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "hearback.toml",
            "[database]\nurl = \"sqlite://from-file.db\"\n",
        )?;
        jail.set_env("HEARBACK_DATABASE__URL", "sqlite://from-key.db");
        jail.set_env(
            "HEARBACK_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/test",
        );
        jail.set_env(
            "HEARBACK_CONFIG",
            "ignored: it names the file, it is not a key",
        );
        jail.set_env("HEARBACK_TEST_POSTGRES_URL", "ignored too");
        let config = load_in(jail, None).unwrap();
        assert_eq!(config.database.url.kind(), DatabaseKind::Postgres);
        Ok(())
    });
}

#[test]
fn an_unknown_key_in_the_file_is_named_with_the_file() {
    Jail::expect_with(|jail| {
        jail.create_file("hearback.toml", "[server]\nlisen = \"127.0.0.1:1\"\n")?;
        let message = error_of(load_in(jail, None));
        assert!(message.contains("unknown key 'server.lisen'"), "{message}");
        assert!(message.contains("hearback.toml"), "{message}");
        Ok(())
    });
}

#[test]
fn an_unknown_environment_key_is_named_with_its_variable() {
    Jail::expect_with(|jail| {
        jail.set_env("HEARBACK_SERVER__LISTN", "127.0.0.1:1");
        let message = error_of(load_in(jail, None));
        assert!(message.contains("unknown key 'server.listn'"), "{message}");
        assert!(message.contains("HEARBACK_SERVER__LISTN"), "{message}");
        Ok(())
    });
}

#[test]
fn bad_values_are_refused_with_the_key_and_the_reason() {
    let cases = [
        ("[server]\nlisten = \"not an address\"\n", "server.listen"),
        (
            "[database]\nurl = \"mysql://root@localhost/db\"\n",
            "unsupported scheme 'mysql'",
        ),
        ("[jobs]\nconcurrency = -1\n", "jobs.concurrency"),
        ("[jobs]\nconcurrency = 0\n", "jobs.concurrency"),
        (
            "[database]\ninbound_writers = 0\n",
            "database.inbound_writers",
        ),
        (
            "[database]\nmax_connections = 2\ninbound_writers = 3\n",
            "database.inbound_writers",
        ),
        ("[log]\nformat = \"xml\"\n", "log.format"),
        (
            "[channels.main]\nprovider = \"carrier-pigeon\"\n",
            "channels.main",
        ),
        (
            "[channels.main]\nprovider = \"console\"\ntoken = \"x\"\n",
            "unknown key 'channels.main.token'",
        ),
        (
            "[channels.\"Bad Name\"]\nprovider = \"console\"\n",
            "invalid channel name",
        ),
        ("server = 3\n", "server"),
        (
            "[dispatch]\nunit_daily_spend_cap = 0\n",
            "dispatch.unit_daily_spend_cap",
        ),
        (
            "[dispatch]\nunit_daily_spend_cap = -5.0\n",
            "dispatch.unit_daily_spend_cap",
        ),
        (
            "[dispatch]\ndefault_region = \"XX1\"\n",
            "dispatch.default_region",
        ),
    ];
    for (file, expected) in cases {
        Jail::expect_with(|jail| {
            jail.create_file("hearback.toml", file)?;
            let message = error_of(load_in(jail, None));
            assert!(message.contains(expected), "{file:?} gave {message}");
            Ok(())
        });
    }
}

#[test]
fn an_explicit_configuration_file_must_exist() {
    Jail::expect_with(|jail| {
        let message = error_of(load_in(jail, Some("missing.toml")));
        assert!(
            message.contains("missing.toml") && message.contains("no such file"),
            "{message}"
        );
        Ok(())
    });
}

#[test]
fn secrets_do_not_leak_through_debug_or_serialisation() {
    Jail::expect_with(|jail| {
        jail.set_env(
            "HEARBACK_DATABASE_URL",
            "postgres://hearback:hunter2@db:5432/hearback",
        );
        let config = load_in(jail, None).unwrap();
        let dump = format!("{config:?}");
        assert!(!dump.contains("hunter2"), "{dump}");
        let serialised = serde_json::to_string(&config).unwrap();
        assert!(!serialised.contains("hunter2"), "{serialised}");
        Ok(())
    });
}

/// `hearback.example.toml` documents every key with its real default: read as a configuration,
/// it holds exactly the keys and values of `Config::default()`.
#[test]
fn the_example_file_documents_every_key_with_its_default() {
    use figment::providers::Serialized;
    use figment::value::Dict;
    let example = include_str!("../../hearback.example.toml");
    let documented: Dict = Figment::from(Toml::string(example))
        .extract()
        .expect("the example parses");
    let defaults: Dict = Figment::from(Serialized::defaults(Config::default()))
        .extract()
        .unwrap();
    let mut documented = documented;
    let channels = documented.remove("channels");
    let mut defaults = defaults;
    defaults.remove("channels");
    let as_json = |d: &Dict| serde_json::to_value(d).unwrap();
    assert_eq!(as_json(&documented), as_json(&defaults));

    let channels = channels
        .and_then(|c| c.into_dict())
        .expect("the example shows a channel");
    for (name, table) in channels {
        let channel: Result<ChannelConfig, _> = table.deserialize();
        assert!(channel.is_ok(), "example channel {name}: {channel:?}");
    }
}

/// The commented `# [channels.…]` examples, uncommented: each one is a valid channel, and
/// together they show every provider and every key of every channel variant.
#[test]
fn every_commented_channel_example_is_a_valid_channel() {
    let example = include_str!("../../hearback.example.toml");
    let mut uncommented = String::new();
    let mut inside = false;
    for line in example.lines() {
        if line.starts_with("# [channels.") {
            inside = true;
        } else if !line.starts_with("# ") {
            inside = false;
        }
        if inside {
            uncommented.push_str(&line[2..]);
            uncommented.push('\n');
        }
    }
    let config: Config = Figment::from(Toml::string(&uncommented))
        .extract()
        .expect("the commented channels parse");
    config
        .validate()
        .expect("the commented channels are consistent");
    let providers: Vec<&str> = config.channels.values().map(|c| c.provider()).collect();
    assert_eq!(
        providers,
        [
            "http",
            "messagebird",
            "plivo",
            "sinch",
            "telnyx",
            "twilio",
            "vonage"
        ]
    );
    for (name, channel) in &config.channels {
        crate::providers::build(channel).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // Every key of every variant appears at least once in the example file.
    let documented = |key: &str| {
        example.contains(&format!("# {key} = ")) || example.contains(&format!("\n{key} = "))
    };
    for channel in config.channels.values() {
        let serialised = serde_json::to_value(channel).unwrap();
        for key in serialised.as_object().unwrap().keys() {
            let shared = [
                "senders",
                "countries",
                "messages_per_second",
                "cost_per_segment",
                "fallback",
                "api_base_url",
            ];
            assert!(
                documented(key) || shared.contains(&key.as_str()),
                "{key} is not shown in an example"
            );
        }
    }
    for key in [
        "countries",
        "messages_per_second",
        "cost_per_segment",
        "fallback",
        "api_base_url",
    ] {
        assert!(documented(key), "{key} is not shown in an example");
    }
}

#[test]
fn channel_keys_are_checked_when_loading() {
    let twilio = "provider = \"twilio\"\naccount_sid = \"AC1\"\nauth_token = \"t\"\n";
    let cases = [
        (format!("[channels.a]\n{twilio}"), "channels.a.senders"),
        (format!("[channels.a]\n{twilio}senders = [\"0612345678\"]\n"), "invalid sender '0612345678'"),
        (format!("[channels.a]\n{twilio}senders = [\"+33757000000\"]\ncountries = [\"fr\"]\n"), "invalid country 'fr'"),
        (
            format!("[channels.a]\n{twilio}senders = [\"+33757000000\"]\nfallback = \"b\"\n"),
            "no channel is named 'b'",
        ),
        (
            format!(
                "[channels.a]\n{twilio}senders = [\"+33757000000\"]\nfallback = \"b\"\n\
                 [channels.b]\n{twilio}senders = [\"+33757000001\"]\nfallback = \"a\"\n"
            ),
            "falls back in a loop",
        ),
        (format!("[channels.a]\n{twilio}senders = [\"+33757000000\"]\ncost_per_segment = -1.0\n"), "cost_per_segment"),
        (format!("[channels.a]\n{twilio}senders = [\"+33757000000\"]\nmessages_per_second = 0\n"), "channels.a.messages_per_second': must be at least 1"),
        (format!("[channels.a]\n{twilio}senders = [\"+33757000000\"]\nauth_tokn = \"x\"\n"), "unknown key 'channels.a.auth_tokn'"),
        ("[channels.a]\nprovider = \"twilio\"\naccount_sid = \"AC1\"\nsenders = [\"+33757000000\"]\n".into(), "auth_token"),
        ("[channels.a]\nprovider = \"http\"\nsecret = \"\"\nsenders = [\"+33757000000\"]\n".into(), "a secret cannot be empty"),
    ];
    for (file, expected) in cases {
        Jail::expect_with(|jail| {
            jail.create_file("hearback.toml", &file)?;
            let message = error_of(load_in(jail, None));
            assert!(message.contains(expected), "{file:?} gave {message}");
            Ok(())
        });
    }
}

#[test]
fn channel_secrets_do_not_leak_through_debug_or_serialisation() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "hearback.toml",
            "[channels.tw]\nprovider = \"twilio\"\naccount_sid = \"AC1\"\nauth_token = \"hunter2\"\nsenders = [\"+33757000000\"]\n",
        )?;
        let config = load_in(jail, None).unwrap();
        let dump = format!("{config:?}");
        assert!(!dump.contains("hunter2"), "{dump}");
        let serialised = serde_json::to_string(&config).unwrap();
        assert!(!serialised.contains("hunter2"), "{serialised}");
        Ok(())
    });
}

#[test]
fn the_privacy_key_comes_from_the_environment_and_never_shows() {
    Jail::expect_with(|jail| {
        let key = "k3y-from-the-environment-0123456789abcdef";
        jail.set_env("HEARBACK_PRIVACY__HASH_KEY", key);
        jail.create_file("hearback.toml", "[privacy]\nretention_days = 90\n")?;
        let config = load_in(jail, None).unwrap();
        assert_eq!(config.privacy.hash_key.as_ref().unwrap().expose(), key);
        assert_eq!(config.privacy.retention_days, Some(90));
        assert!(!format!("{config:?}").contains(key));
        assert!(!serde_json::to_string(&config).unwrap().contains(key));
        Ok(())
    });
}

#[test]
fn privacy_values_that_cannot_work_are_refused_with_their_key() {
    for (toml, key, reason) in [
        ("retention_days = 0", "privacy.retention_days", "at least 1"),
        (
            "hash_key = \"short\"",
            "privacy.hash_key",
            "at least 32 characters",
        ),
        ("hash_key = \"\"", "privacy.hash_key", "cannot be empty"),
        ("retention_days = -3", "privacy.retention_days", ""),
    ] {
        Jail::expect_with(|jail| {
            jail.create_file("hearback.toml", &format!("[privacy]\n{toml}\n"))?;
            let message = error_of(load_in(jail, None));
            assert!(
                message.contains(key) && message.contains(reason),
                "{toml}: {message}"
            );
            Ok(())
        });
    }
}
