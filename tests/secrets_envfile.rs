//! Env-file targets with tricky content: every other line, comment, `export ` prefix,
//! CRLF, blank line, duplicate key and the missing final newline survive a rotation;
//! values with quotes, `#`, `=` and `$` read back exactly as Compose reads them.

mod common;

use std::os::unix::fs::MetadataExt;

use common::Env;
use keyward::secret::SecretBytes;
use keyward::secrets::envfile::{self, EnvFile};
use proptest::prelude::*;

const TRICKY: &str = "# PazPaz production env\r\n\
export COMPOSE_PROJECT_NAME=pazpaz\r\n\
\r\n\
DATABASE_URL=\"postgresql://pazpaz@db:5432/pazpaz?sslmode=verify-full\" # kept\r\n\
SECRET_KEY=old-value-1\r\n\
   # indented comment with = and $HOME and 'quotes'\r\n\
export SECRET_KEY='old value 2'\r\n\
GREETING='it has # and = inside'\r\n\
PRICE=\"$$5 \\\"quoted\\\"\"\r\n\
EMPTY=\r\n\
LAST_LINE_NO_NEWLINE=yes";

fn lines_without(text: &str, key: &str) -> Vec<String> {
    text.split("\r\n")
        .filter(|l| !l.trim_start().trim_start_matches("export ").starts_with(&format!("{key}=")))
        .map(String::from)
        .collect()
}

#[test]
fn rotation_preserves_everything_else() {
    let env = Env::init();
    let path = env.path("pazpaz/.env.production");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, TRICKY).unwrap();
    env.run(&["run"]).code(0);
    let after = std::fs::read_to_string(&path).unwrap();
    // Both SECRET_KEY assignments changed, to the same value, prefixes kept.
    let f = EnvFile::parse("t", &after).unwrap();
    let v = f.get("SECRET_KEY").unwrap();
    let stored = env.run(&["secrets", "get", "SECRET_KEY"]);
    stored.code(0);
    assert_eq!(v.expose(), stored.stdout.as_bytes());
    assert_eq!(f.keys().iter().filter(|k| **k == "SECRET_KEY").count(), 2, "{after}");
    assert_eq!(
        after.matches(&format!("SECRET_KEY={}\r\n", v.as_str().unwrap())).count(),
        2,
        "{after}"
    );
    assert!(after.contains("\r\nexport SECRET_KEY="), "{after}");
    // Every other original line is there, byte for byte and in order.
    let original: Vec<String> = lines_without(TRICKY, "SECRET_KEY");
    let now: Vec<String> = lines_without(&after, "SECRET_KEY");
    assert_eq!(&now[..original.len() - 1], &original[..original.len() - 1]);
    // The old last line got a CRLF separator; the file still ends without a newline.
    assert!(after.contains("LAST_LINE_NO_NEWLINE=yes\r\n"), "{after}");
    assert!(!after.ends_with('\n'), "{after:?}");
    assert!(
        !after.contains("\n\n") && after.matches('\n').count() == after.matches("\r\n").count(),
        "mixed endings: {after:?}"
    );
    // Untouched values still read the same.
    assert_eq!(f.get("GREETING").unwrap().expose(), b"it has # and = inside");
    assert_eq!(f.get("COMPOSE_PROJECT_NAME").unwrap().expose(), b"pazpaz");
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    // No temp file left beside it.
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn imported_values_with_special_characters_round_trip() {
    let env = Env::init();
    env.run(&["run"]).code(0);
    let path = env.path("pazpaz/.env.production");
    for value in [
        "https://abc123@o1.ingest.sentry.io/42",
        "pa$$word with spaces",
        "it's #1 = best",
        "say \"hi\" \\ bye",
        "${NOT_INTERPOLATED}",
    ] {
        env.run_stdin(&["secrets", "set", "SENTRY_DSN"], value.as_bytes()).code(0);
        let f = envfile::read(&path).unwrap();
        assert_eq!(f.get("SENTRY_DSN").unwrap().expose(), value.as_bytes(), "{value:?}");
        let r = env.run(&["secrets", "get", "SENTRY_DSN"]);
        assert_eq!(r.stdout, value);
    }
    // A value Compose cannot be given safely is refused, and nothing changes.
    let before = std::fs::read(&path).unwrap();
    let r = env.run_stdin(&["secrets", "set", "SENTRY_DSN"], b"it's $HOME");
    r.code(1);
    assert!(r.stdout.contains("cannot be written to an env file safely"), "{}", r.stdout);
    assert!(r.stdout.contains("is still current"), "{}", r.stdout);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any printable value keyward may write reads back exactly, and the rest of the
    /// file is untouched.
    #[test]
    fn any_value_round_trips(
        value in "[ -~]{0,40}",
        lead in prop::sample::select(vec!["", "# c\n", "A=1\r\n", "export B='x'\n"]),
        tail in prop::sample::select(vec!["", "\n", "Z=9", "Z=9\n", "# end"]),
    ) {
        let text = format!("{lead}K=old\n{tail}");
        let mut f = EnvFile::parse("t", &text).unwrap();
        let v = SecretBytes::from_slice(value.as_bytes());
        match f.set("K", &v) {
            Ok(()) => {
                let out = f.render().to_string();
                let back = EnvFile::parse("t", &out).unwrap();
                let got = back.get("K").unwrap();
                prop_assert_eq!(got.expose(), value.as_bytes());
                prop_assert!(out.starts_with(lead));
                prop_assert!(out.ends_with(tail));
            }
            Err(_) => prop_assert!(value.contains('\'') && value.contains('$')),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Untrusted env-file content never panics the parser, and rendering what was
    /// parsed gives back the same bytes.
    #[test]
    fn parser_survives_anything(text in "(?s).{0,200}", key in "[A-Z_]{1,4}") {
        if let Ok(f) = EnvFile::parse("t", &text) {
            let rendered = f.render();
            prop_assert_eq!(rendered.as_str(), text.as_str());
            let _ = f.get(&key);
        }
    }
}
