//! The routing table's credential and path fields through the proxy's
//! confinement (`backends::confine`, `backends::validate`), as a routing
//! table written from CRs reaches them. Input: a routing-table document, or
//! any text whose lines are taken as paths.
//!
//! Properties: no panic; whatever the confinement accepts lies strictly
//! inside its root after every symbolic link is resolved, for a root that
//! holds a link out, a link in and a dangling link.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use api::RoutingTable;
use api::credential::{Credential, CredentialRef};
use api::feast_config::{BackendConf, BackendType, RedisConf, RedisType, SqliteConf};
use api::routing::Backend;
use backends::confine::confine;
use backends::{OpenContext, Trust};
use libfuzzer_sys::fuzz_target;

struct Roots {
    _dir: PathBuf,
    data: PathBuf,
    secrets: PathBuf,
}

/// `<tmp>/{data,secrets}` with links out of them, made once per process.
fn roots() -> &'static Roots {
    static ROOTS: OnceLock<Roots> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hos-fuzz-confine-{}", std::process::id()));
        let data = dir.join("data");
        let secrets = dir.join("secrets");
        let outside = dir.join("outside");
        for d in [&data, &secrets, &outside, &secrets.join("s"), &data.join("sub")] {
            std::fs::create_dir_all(d).expect("fuzz scratch dir");
        }
        std::fs::write(secrets.join("s/k"), "inside").expect("seed secret");
        std::fs::write(outside.join("token"), "outside").expect("seed outside");
        #[cfg(unix)]
        for root in [&data, &secrets] {
            let _ = std::os::unix::fs::symlink(&outside, root.join("out"));
            let _ = std::os::unix::fs::symlink(outside.join("token"), root.join("tok"));
            let _ = std::os::unix::fs::symlink(dir.join("missing"), root.join("dangling"));
            let _ = std::os::unix::fs::symlink(".", root.join("self"));
            let _ = std::os::unix::fs::symlink("..", root.join("up"));
        }
        let data = std::fs::canonicalize(&data).expect("canonical data");
        let secrets = std::fs::canonicalize(&secrets).expect("canonical secrets");
        Roots {
            _dir: dir,
            data,
            secrets,
        }
    })
}

fn assert_inside(root: &Path, path: &str, got: &Path) {
    assert!(
        got.starts_with(root) && got != root,
        "{path:?} confined to {got:?}, outside {root:?}"
    );
    // Whatever exists of it resolves inside too (links included).
    let mut p = got.to_path_buf();
    while !p.exists() && p.pop() {}
    if let Ok(real) = std::fs::canonicalize(&p) {
        assert!(real.starts_with(root), "{path:?} resolves to {real:?}");
    }
}

fn check_path(path: &str) {
    let r = roots();
    for root in [&r.data, &r.secrets] {
        if let Ok(got) = confine(root, Path::new(path)) {
            assert_inside(root, path, &got);
        }
    }
    // The same text as a routing table's SQLite path and Redis password file.
    let ctx = OpenContext {
        base_dir: r.data.clone(),
        secrets_dir: r.secrets.clone(),
        trust: Trust::Confined,
    };
    if let Ok(got) = backends::sqlite::database_path(
        &SqliteConf {
            path: path.to_string(),
            vector_enabled: None,
            vector_len: None,
            text_search_enabled: None,
            enable_openai_compatible_store: None,
            key_ttl_seconds: None,
        },
        &ctx,
    ) {
        assert_inside(&r.data, path, &got);
    }
    let cred = Credential::Reference(CredentialRef::File(path.to_string()));
    if let Ok(Some(got)) = backends::credentials::check(&cred, "conf.password", &ctx) {
        assert_inside(&r.secrets, path, &got);
    }
    let env = Credential::Reference(CredentialRef::Env(path.to_string()));
    assert!(backends::credentials::check(&env, "conf.password", &ctx).is_err());
    let redis = Backend {
        name: "r".into(),
        backend_type: BackendType::Redis,
        conf: BackendConf::Redis(RedisConf {
            redis_type: RedisType::Redis,
            sentinel_master: "m".into(),
            connection_string: "localhost:6379".into(),
            key_ttl_seconds: None,
            full_scan_for_deletion: None,
            skip_dedup: None,
            password: Some(cred),
        }),
    };
    let _ = backends::validate(&redis, &ctx);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let r = roots();
    let ctx = OpenContext {
        base_dir: r.data.clone(),
        secrets_dir: r.secrets.clone(),
        trust: Trust::Confined,
    };
    if let Ok(table) = RoutingTable::parse("routing.yaml", text) {
        for b in &table.backends {
            // No panic on any backend, whatever it names.
            let _ = backends::validate(b, &ctx);
            match &b.conf {
                BackendConf::Sqlite(s) => check_path(&s.path),
                BackendConf::Redis(c) => {
                    if let Some(Credential::Reference(CredentialRef::File(f))) = &c.password {
                        check_path(f);
                    }
                }
                BackendConf::Cassandra(c) => {
                    for cred in [&c.username, &c.password].into_iter().flatten() {
                        if let Credential::Reference(CredentialRef::File(f)) = cred {
                            check_path(f);
                        }
                    }
                }
                BackendConf::Bigtable(_) => {}
            }
        }
        return;
    }
    for line in text.lines().take(16) {
        check_path(line);
    }
});
