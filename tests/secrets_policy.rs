//! Policy bad input: every error names the file, the line and the key, exits 2, and
//! changes nothing.

mod common;

use common::{Env, tree};

/// A starter installation without the CA (whose first run would deploy certificates:
/// these tests check that a bad policy writes nothing) and with one more policy file.
fn with_policy(text: &str) -> Env {
    let env = Env::init();
    env.drop_sections(&["ca"]);
    std::fs::write(env.path("policies/zz-test.toml"), text).unwrap();
    env
}

#[track_caller]
fn refused(env: &Env, want: &[&str]) {
    let before = tree(env.root());
    for args in [
        &["secrets", "list"][..],
        &["status"],
        &["secrets", "rotate", "--due"],
        &["report", "presence", "--source", "state"],
    ] {
        let r = env.run(args);
        r.code(2);
        let file = env.path("policies/zz-test.toml").display().to_string();
        assert!(r.stderr.contains(&file), "{args:?}: {}", r.stderr);
        for w in want {
            assert!(r.stderr.contains(w), "{args:?}: expected {w:?} in {}", r.stderr);
        }
    }
    // `run` goes on with the other capabilities but reports the policy error.
    let r = env.run(&["run"]);
    r.code(1);
    for w in want {
        assert!(r.stdout.contains(w), "run: expected {w:?} in {}", r.stdout);
    }
    let after: Vec<_> =
        tree(env.root()).into_iter().filter(|p| !p.starts_with(env.path("state"))).collect();
    let before: Vec<_> = before.into_iter().filter(|p| !p.starts_with(env.path("state"))).collect();
    assert_eq!(after, before, "a bad policy must not write any target or key");
}

#[test]
fn names_follow_githubs_rules() {
    for (name, why) in [
        ("lower_case", "contains 'l'"),
        ("1ST", "starts with a digit"),
        ("GITHUB_TOKEN", "GITHUB_"),
        ("WITH-DASH", "contains '-'"),
    ] {
        let env = with_policy(&format!(
            "# test\n[[secret]]\nname = \"{name}\"\ndescription = \"x\"\ngenerator = {{ kind = \"hex\", bytes = 32 }}\n"
        ));
        refused(&env, &["zz-test.toml:3:8", "secret.name", why]);
    }
}

#[test]
fn unknown_keys_and_bad_values_name_their_line() {
    let env = with_policy(
        "[[secret]]\nname = \"X_KEY\"\ndescription = \"x\"\ngenerator = { kind = \"hex\", bytes = 32 }\nrotaton_days = 30\n",
    );
    refused(&env, &["zz-test.toml:5:", "rotaton_days"]);
    let env = with_policy(
        "[[secret]]\nname = \"X_KEY\"\ndescription = \"x\"\ngenerator = { kind = \"password\", length = 8 }\n",
    );
    refused(&env, &["zz-test.toml:4:", "secret X_KEY: generator", "length = 8"]);
    let env = with_policy(
        "[[secret]]\nname = \"X_KEY\"\ndescription = \"x\"\ngenerator = { kind = \"uuid\" }\n",
    );
    refused(&env, &["zz-test.toml:4:", "uuid"]);
    let env = with_policy(
        "[[secret]]\nname = \"X_KEY\"\ndescription = \"x\"\ngenerator = { kind = \"hex\", bytes = 32 }\nrequired_in = [\"prod uction\"]\n",
    );
    refused(&env, &["zz-test.toml:5:", "required_in"]);
    let env = with_policy(
        "[[secret]]\nname = \"X_KEY\"\ndescription = \"x\"\ngenerator = { kind = \"hex\", bytes = 32 }\ngithub = [{ scope = \"planet\" }]\n",
    );
    refused(&env, &["zz-test.toml:5:", "planet"]);
    let env = with_policy(
        "[[secret]]\nname = \"X_KEY\"\ndescription = \"x\"\ngenerator = { kind = \"hex\", bytes = 32 }\n[[secret\n",
    );
    refused(&env, &["zz-test.toml:5:"]);
}

#[test]
fn a_name_defined_twice_points_at_both() {
    let env = with_policy(
        "[[secret]]\nname = \"SECRET_KEY\"\ndescription = \"again\"\ngenerator = { kind = \"hex\", bytes = 32 }\n",
    );
    refused(&env, &["zz-test.toml:2:8", "already defined at", "application.toml:"]);
}

#[test]
fn bad_secrets_config_is_a_usage_error() {
    let env = Env::init();
    let text = std::fs::read_to_string(env.config()).unwrap();
    std::fs::write(
        env.config(),
        text.replace("machine_key = \"machine.key\"", "machine_key = \"state/machine.key\""),
    )
    .unwrap();
    let r = env.run(&["secrets", "list"]);
    r.code(2);
    assert!(
        r.stderr.contains("secrets.machine_key") && r.stderr.contains("inside the state folder"),
        "{}",
        r.stderr
    );
    std::fs::write(env.config(), text.replace("[secrets.env_files]", "[secrets.env_filez]"))
        .unwrap();
    let r = env.run(&["secrets", "list"]);
    r.code(2);
    assert!(r.stderr.contains("env_filez"), "{}", r.stderr);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// Untrusted policy text never panics the loader: it loads or gives an error.
    #[test]
    fn policy_parser_survives_anything(
        text in "(?s)(\\[\\[secret\\]\\]\n|name = \"[A-Z_1]{0,6}\"\n|description = \"d\"\n|generator = \\{ kind = \"(hex|password|imported)\", (bytes|length) = [0-9]{1,3} \\}\n|env = \\[\\{ file = \"[a-z]{0,3}\" \\}\\]\n|.{0,10}\n){0,12}"
    ) {
        let mut p = keyward::secrets::Policies::default();
        let _ = p.add_text(std::path::Path::new("fuzz.toml"), &text);
    }
}
