//! The local GitHub server is faithful enough for the real GitHub CLI: `gh secret
//! set` and `gh secret list` work against it (plain HTTP through it as a forward
//! proxy, the way gh talks to `github.localhost`), what gh sent opens to the value
//! given, and keyward and gh see each other's secrets.

mod common;
#[path = "support/github_fixture.rs"]
mod github_fixture;
#[path = "support/github_server.rs"]
mod github_server;

use std::io::Write;
use std::process::{Command, Stdio};

use github_fixture::*;
use github_server::{GithubServer, TOKEN, env_key, org_key, repo_key};

/// gh pointed at the local server: `GH_HOST=github.localhost` makes gh use
/// `http://api.github.localhost/` (plain HTTP), and `HTTP_PROXY` sends that to us.
fn gh(
    server: &GithubServer,
    home: &std::path::Path,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> (i32, String, String) {
    let bin = common::require_tool("gh", "apt-get install gh");
    let proxy = format!("http://127.0.0.1:{}", server.port);
    let mut c = Command::new(bin);
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GH_CONFIG_DIR", home.join("gh"))
        .env("GH_HOST", "github.localhost")
        .env("GH_TOKEN", TOKEN)
        .env("HTTP_PROXY", &proxy)
        .env("http_proxy", &proxy)
        .env("GH_NO_UPDATE_NOTIFIER", "1")
        .env("GH_PROMPT_DISABLED", "1")
        .env("NO_COLOR", "1")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("run gh");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn gh_sets_and_lists_secrets_in_all_three_scopes() {
    let s = server();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let (code, out, err) =
        gh(&s, h, &["secret", "set", "FROM_GH", "-R", "pazpaz/app"], Some(b"gh-value-1"));
    assert_eq!(code, 0, "gh secret set failed\n{out}\n{err}\n{:?}", s.log());
    assert_eq!(s.value(&repo_key(OWNER, REPO), "FROM_GH").unwrap(), b"gh-value-1");

    let (code, out, err) = gh(
        &s,
        h,
        &["secret", "set", "ENV_FROM_GH", "-R", "pazpaz/app", "--env", "production"],
        Some(b"gh-env"),
    );
    assert_eq!(code, 0, "{out}\n{err}\n{:?}", s.log());
    assert_eq!(s.value(&env_key(OWNER, REPO, ENV), "ENV_FROM_GH").unwrap(), b"gh-env");

    let (code, out, err) = gh(
        &s,
        h,
        &["secret", "set", "ORG_FROM_GH", "--org", "pazpaz", "--visibility", "all"],
        Some(b"gh-org"),
    );
    assert_eq!(code, 0, "{out}\n{err}\n{:?}", s.log());
    assert_eq!(s.value(&org_key(ORG), "ORG_FROM_GH").unwrap(), b"gh-org");
    assert_eq!(s.stored(&org_key(ORG), "ORG_FROM_GH").unwrap().visibility.as_deref(), Some("all"));

    // keyward's secrets show in gh's list, and gh's in keyward's status.
    let cfg = config(&s);
    let api = api(&cfg);
    let states = States::new();
    let r = sync(&api, &cfg, &[item("FROM_KEYWARD", 1, b"kw", vec![repo(), env()])], &states);
    assert!(r.failed().is_empty(), "{:?}", errors(&r));
    let (code, out, err) = gh(&s, h, &["secret", "list", "-R", "pazpaz/app"], None);
    assert_eq!(code, 0, "{out}\n{err}\n{:?}", s.log());
    assert!(out.contains("FROM_GH") && out.contains("FROM_KEYWARD"), "{out}");
    let (code, out, err) =
        gh(&s, h, &["secret", "list", "-R", "pazpaz/app", "--env", "production"], None);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("ENV_FROM_GH") && out.contains("FROM_KEYWARD"), "{out}");
    let (code, out, err) = gh(&s, h, &["secret", "list", "--org", "pazpaz"], None);
    assert_eq!(code, 0, "{out}\n{err}\n{:?}", s.log());
    assert!(out.contains("ORG_FROM_GH"), "{out}");

    let wanted = [item("FROM_KEYWARD", 1, b"kw", vec![repo()])];
    let (targets, _) = keyward::github::sync::plan_targets(&wanted, &cfg);
    let status = keyward::github::status_of(&api, &targets, &states.load());
    let repo_status = status.scopes.iter().find(|x| x.key == repo_key(OWNER, REPO)).unwrap();
    assert_eq!(repo_status.present, ["FROM_KEYWARD"]);
    assert_eq!(repo_status.unmanaged, ["FROM_GH"]);
    s.assert_faithful();
}

#[test]
fn gh_sets_many_from_a_dotenv_file_and_every_value_decrypts() {
    let s = server();
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("secrets.env");
    let mut text = String::new();
    for i in 0..20 {
        text.push_str(&format!("BULK_{i}=value-{i}\n"));
    }
    std::fs::write(&file, text).unwrap();
    let (code, out, err) = gh(
        &s,
        home.path(),
        &["secret", "set", "-f", file.to_str().unwrap(), "-R", "pazpaz/app"],
        None,
    );
    assert_eq!(code, 0, "{out}\n{err}\n{:?}", s.log());
    for i in 0..20 {
        assert_eq!(
            s.value(&repo_key(OWNER, REPO), &format!("BULK_{i}")).unwrap(),
            format!("value-{i}").as_bytes()
        );
    }
    assert_eq!(s.count("PUT", "/actions/secrets/BULK_"), 20);
    s.assert_faithful();
}
