//! Prompt templates over dataset rows (minijinja, Jinja2 syntax): a row's
//! fields are the template's variables, so `{{ prompt }}`, `{{ nums | join(", ") }}`
//! or `{{ response }}` pick from the row. Undefined variables are errors, so a
//! typo in a field name fails on the first row instead of producing prompts
//! with holes.

use minijinja::{Environment, UndefinedBehavior};
use retort_engine::Row;

/// A set of named templates compiled once per stage run.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Compiles `(name, source)` pairs; the error names the template and the
    /// line of the syntax error.
    pub fn new<'a>(sources: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Keep the text exactly as written: a trailing newline is part of a prompt.
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .keep_trailing_newline(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        for (name, src) in sources {
            env.add_template_owned(name.to_string(), src.to_string()).map_err(|e| describe(name, &e))?;
        }
        Ok(Templates { env })
    }

    /// Renders template `name` with the row's fields as variables.
    pub fn render(&self, name: &str, row: &Row) -> Result<String, String> {
        let t = self.env.get_template(name).map_err(|e| describe(name, &e))?;
        t.render(minijinja::Value::from(minijinja::value::Serde(row))).map_err(|e| describe(name, &e))
    }
}

fn describe(name: &str, e: &minijinja::Error) -> String {
    let mut msg = format!("template `{name}`: {}", e.kind());
    if let Some(detail) = e.detail() {
        msg += &format!(": {detail}");
    }
    if let Some(line) = e.line() {
        msg += &format!(" (template line {line})");
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: serde_json::Value) -> Row {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn renders_row_fields_and_keeps_trailing_newline() {
        let t = Templates::new([("a", "Use {{ nums | join(', ') }} to make {{ target }}.\n")]).unwrap();
        let out = t.render("a", &row(json!({"nums": [1, 2, 3], "target": 6}))).unwrap();
        assert_eq!(out, "Use 1, 2, 3 to make 6.\n");
    }

    #[test]
    fn undefined_field_and_syntax_errors_are_named() {
        let t = Templates::new([("a", "{{ respnse }}")]).unwrap();
        let e = t.render("a", &row(json!({"response": "x"}))).unwrap_err();
        assert!(e.contains("template `a`") && e.contains("undefined"), "{e}");
        let e = Templates::new([("b", "{{ x ")]).err().unwrap();
        assert!(e.contains("template `b`") && e.contains("line 1"), "{e}");
    }
}
