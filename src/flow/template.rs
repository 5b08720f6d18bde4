//! Message texts with `{{variables}}` from the invitation.

use std::collections::BTreeMap;

/// A text split once, at load time, into literal parts and variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Variable(String),
}

impl Template {
    /// Parses `Bonjour {{ first_name }} !`. Names are `[a-z0-9_]`, spaces inside braces allowed.
    pub fn parse(raw: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = raw;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("'{{{{' without its closing '}}}}' in \"{raw}\""))?;
            let name = after[..close].trim();
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(format!(
                    "'{{{{{name}}}}}' is not a variable name (use a-z, 0-9 and '_')"
                ));
            }
            parts.push(Part::Variable(name.to_string()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The variables the text uses, in order, possibly repeated.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Variable(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The text with each variable replaced by its value. Intake refuses invitations that lack a
    /// variable the flow declares, so a missing value only shows in `flows simulate`, as `{{name}}`.
    pub fn render(&self, values: &BTreeMap<String, String>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Variable(name) => match values.get(name) {
                    Some(value) => out.push_str(value),
                    None => {
                        out.push_str("{{");
                        out.push_str(name);
                        out.push_str("}}");
                    }
                },
            }
        }
        out
    }

    /// The text as written, variables shown as `{{name}}` (for linting).
    pub fn source(&self) -> String {
        self.render(&BTreeMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn variables_are_replaced_by_their_values() {
        let template = Template::parse(
            "Bonjour {{first_name}}, votre commande {{ store }} du {{order_date}}.",
        )
        .unwrap();
        let text = template.render(&values(&[
            ("first_name", "Léa"),
            ("store", "Lyon 2"),
            ("order_date", "12/11"),
        ]));
        assert_eq!(text, "Bonjour Léa, votre commande Lyon 2 du 12/11.");
        assert_eq!(
            template.variables().collect::<Vec<_>>(),
            ["first_name", "store", "order_date"]
        );
    }

    #[test]
    fn a_text_without_variables_is_unchanged() {
        assert_eq!(
            Template::parse("Merci !").unwrap().render(&BTreeMap::new()),
            "Merci !"
        );
        assert_eq!(Template::parse("").unwrap().render(&BTreeMap::new()), "");
    }

    #[test]
    fn a_missing_value_stays_visible() {
        assert_eq!(
            Template::parse("Hi {{name}}")
                .unwrap()
                .render(&BTreeMap::new()),
            "Hi {{name}}"
        );
    }

    #[test]
    fn malformed_variables_are_refused() {
        for bad in [
            "Hi {{name",
            "Hi {{}}",
            "Hi {{First Name}}",
            "{{nom-client}}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
