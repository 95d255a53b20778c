//! The committed secrets reference and the embedded init defaults agree with the
//! repository's policies.

mod common;

use common::Env;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn committed_reference_matches_the_policies() {
    let env = Env::empty();
    let r = env.run(&["secrets", "docs", "--policies", &format!("{ROOT}/policies")]);
    r.code(0);
    let committed =
        std::fs::read_to_string(format!("{ROOT}/docs/deployment/github-cd-secrets.md")).unwrap();
    assert!(
        committed == r.stdout,
        "docs/deployment/github-cd-secrets.md is out of date with policies/: run\n  cargo run -- secrets docs --policies policies -o docs/deployment/github-cd-secrets.md"
    );
    for name in ["POSTGRES_PASSWORD", "ENCRYPTION_MASTER_KEY", "SENTRY_DSN"] {
        assert!(r.stdout.contains(&format!("`{name}`")), "{name}");
    }
}

#[test]
fn docs_writes_a_file_from_the_configured_policies() {
    let env = Env::init();
    let out = env.path("ref.md");
    let r = env.run(&["secrets", "docs", "-o", out.to_str().unwrap()]);
    r.code(0);
    assert!(r.stdout.contains("11 secrets"), "{}", r.stdout);
    let committed =
        std::fs::read_to_string(format!("{ROOT}/docs/deployment/github-cd-secrets.md")).unwrap();
    assert_eq!(
        std::fs::read_to_string(out).unwrap(),
        committed,
        "init writes the repository's policies"
    );
}

#[test]
fn init_writes_the_repositorys_policies() {
    let env = Env::init();
    for f in std::fs::read_dir(format!("{ROOT}/policies")).unwrap() {
        let f = f.unwrap();
        let written = env.path("policies").join(f.file_name());
        assert_eq!(
            std::fs::read(&written).unwrap(),
            std::fs::read(f.path()).unwrap(),
            "{written:?}"
        );
    }
}
