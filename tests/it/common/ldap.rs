//! A real OpenLDAP `slapd` (Debian's `slapd`, seeded with `ldapadd` from `ldap-utils`) with its
//! own config and database in a temp dir, on a free loopback port, run as the `openldap` user
//! when there is one. Stopped (and its files removed) on `Drop`; [`Slapd::stop`] and
//! [`Slapd::resume`] make an outage and end it on the same port with the same data.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BASE: &str = "dc=example,dc=org";
pub const ADMIN: &str = "cn=admin,dc=example,dc=org";
pub const ADMIN_PASSWORD: &str = "admin-secret";
/// The service account nidan binds as for look-ups (read-only).
pub const READER: &str = "cn=reader,dc=example,dc=org";
pub const READER_PASSWORD: &str = "reader-secret";

pub struct Slapd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub port: u16,
}

/// What the server lets users do with their own password.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SelfWrite {
    Allowed,
    Refused,
}

fn dn(uid: &str) -> String {
    format!("uid={uid},ou=people,{BASE}")
}

impl Slapd {
    /// A server with `ou=people` and `ou=groups`, the reader account, and no users.
    pub fn start(self_write: SelfWrite) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        let password_acl = match self_write {
            SelfWrite::Allowed => "by self write by anonymous auth by * none",
            SelfWrite::Refused => "by anonymous auth by * none",
        };
        let conf = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include /etc/ldap/schema/nis.schema\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             moduleload memberof\n\
             pidfile {dir}/slapd.pid\n\
             allow bind_anon_dn\n\
             password-hash {{SSHA}}\n\
             database mdb\n\
             maxsize 10485760\n\
             suffix \"{BASE}\"\n\
             rootdn \"{ADMIN}\"\n\
             rootpw {ADMIN_PASSWORD}\n\
             directory {dir}/db\n\
             overlay memberof\n\
             memberof-group-oc groupOfNames\n\
             memberof-member-ad member\n\
             memberof-memberof-ad memberOf\n\
             access to attrs=userPassword {password_acl}\n\
             access to * by * read\n",
            dir = dir.path().display()
        );
        std::fs::write(dir.path().join("slapd.conf"), conf).unwrap();
        let mut s = Self {
            dir,
            child: None,
            port: crate::common::free_port(),
        };
        s.resume();
        s.add(&format!(
            "dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: ou=people,{BASE}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,{BASE}\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: {READER}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
             cn: reader\nuserPassword: {READER_PASSWORD}\n"
        ));
        s
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts (again) on the same port with the same database.
    pub fn resume(&mut self) {
        let unprivileged = is_root() && user_exists("openldap");
        if unprivileged {
            let _ = Command::new("chown")
                .args(["-R", "openldap:openldap"])
                .arg(self.dir.path())
                .status();
        }
        let mut cmd = Command::new("/usr/sbin/slapd");
        cmd.arg("-f")
            .arg(self.path("slapd.conf"))
            .args(["-h", &format!("ldap://127.0.0.1:{}/", self.port)])
            // In the foreground (a child this harness can stop), logging nothing.
            .args(["-d", "0"]);
        if unprivileged {
            cmd.args(["-u", "openldap", "-g", "openldap"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = Command::new("ldapsearch")
                .args(["-x", "-H", &self.url(), "-s", "base", "-b", "", "-LLL"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("slapd exited: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "slapd did not answer on {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (an outage); [`resume`](Self::resume) ends it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGINT: slapd closes its database cleanly.
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Adds LDIF as the administrator.
    pub fn add(&self, ldif: &str) {
        self.admin_tool("ldapadd", &[], ldif);
    }

    /// Modifies with LDIF as the administrator.
    pub fn modify(&self, ldif: &str) {
        self.admin_tool("ldapmodify", &[], ldif);
    }

    /// A person `uid` under `ou=people` with a password, a name, a mail and a mobile number.
    pub fn add_user(&self, uid: &str, password: &str) {
        self.add(&format!(
            "dn: {dn}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid} Example\nsn: Example\n\
             mail: {uid}@example.org\nmobile: +81 90 1234 5678\nuserPassword: {password}\n",
            dn = dn(uid)
        ));
    }

    /// A `groupOfNames` under `ou=groups` with these members.
    pub fn add_group(&self, cn: &str, members: &[&str]) {
        let mut ldif =
            format!("dn: cn={cn},ou=groups,{BASE}\nobjectClass: groupOfNames\ncn: {cn}\n");
        for m in members {
            ldif.push_str(&format!("member: {}\n", dn(m)));
        }
        self.add(&ldif);
    }

    /// Sets a user's password as the administrator (an operator's change outside nidan).
    pub fn set_password(&self, uid: &str, password: &str) {
        let out = Command::new("ldappasswd")
            .args(["-x", "-H", &self.url(), "-D", ADMIN, "-w", ADMIN_PASSWORD])
            .args(["-s", password, &dn(uid)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ldappasswd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Whether `password` binds as `uid` (checked with the OpenLDAP tools, not nidan).
    pub fn binds(&self, uid: &str, password: &str) -> bool {
        Command::new("ldapwhoami")
            .args(["-x", "-H", &self.url(), "-D", &dn(uid), "-w", password])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    pub fn dn(uid: &str) -> String {
        dn(uid)
    }

    fn admin_tool(&self, tool: &str, args: &[&str], ldif: &str) {
        use std::io::Write;
        let mut child = Command::new(tool)
            .args(["-x", "-H", &self.url(), "-D", ADMIN, "-w", ADMIN_PASSWORD])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A gateway whose users come from `s` (`users.ldap`, look-ups kept `cache_ttl`).
pub fn gateway(s: &Slapd, cache_ttl: &str) -> crate::common::Gateway {
    builder(s, cache_ttl).start()
}

/// [`gateway`]'s configuration, for a test to add to.
pub fn builder(s: &Slapd, cache_ttl: &str) -> crate::common::GatewayBuilder {
    crate::common::Gateway::builder().set("users", &users_yaml(s, cache_ttl))
}

/// The `users` value that points nidan at `s` (the service account's password written to a
/// file beside the server's).
pub fn users_yaml(s: &Slapd, cache_ttl: &str) -> String {
    let secret = s.path("reader-password");
    std::fs::write(&secret, format!("{READER_PASSWORD}\n")).unwrap();
    format!(
        "{{ ldap: {{ url: \"{url}\", bind_dn: \"{READER}\", bind_password_file: \"{secret}\", \
         base_dn: \"ou=people,{BASE}\", user_filter: \"(&(objectClass=inetOrgPerson)(uid={{id}}))\", \
         timeout: 2s, cache_ttl: {cache_ttl} }} }}",
        url = s.url(),
        secret = secret.display(),
    )
}

/// alice (staff, ops) and hanako (the harness's PASSWORD, staff).
pub fn gateway_users(s: &Slapd) {
    s.add_user("alice", "alice-pass-1");
    s.add_user("hanako", crate::common::PASSWORD);
    s.add_group("staff", &["alice", "hanako"]);
    s.add_group("ops", &["alice"]);
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn user_exists(name: &str) -> bool {
    Command::new("id")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
