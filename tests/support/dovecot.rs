//! A real Dovecot IMAP server for a test (Debian's dovecot-imapd; scripts/install-test-deps.sh
//! installs it): a private dovecot.conf in a temporary directory (no system services, nothing
//! from /etc/dovecot), one user from a passwd-file whose Maildir is a copy of a fixture, IMAPS
//! on a free loopback port with the development certificate. Started with `dovecot -F -c CONF`,
//! stopped by its pid (TERM, then KILL) when dropped, even when the test panics.
#![allow(dead_code)]

use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "dmarc";
pub const PASSWORD: &str = "s3cret pass";

pub struct Dovecot {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// The user's Maildir, as Dovecot keeps it.
    pub maildir: PathBuf,
}

impl Dovecot {
    /// Start Dovecot serving a copy of `fixture` (a Maildir) as the user's INBOX.
    pub fn start(fixture: &Path, cert: &Path, key: &Path, free_port: fn() -> u16) -> Dovecot {
        let binary = ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("dovecot is not installed: run scripts/install-test-deps.sh (dovecot-imapd)");
        let mut last_log = String::new();
        // A port taken between our probe and Dovecot's bind: try another.
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let maildir = setup(dir.path(), fixture, cert, key, port);
            let child = Command::new(binary)
                .args(["-F", "-c"])
                .arg(dir.path().join("dovecot.conf"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start dovecot");
            let mut server = Dovecot {
                child,
                port,
                dir,
                maildir,
            };
            if server.wait_listening(Duration::from_secs(30)) {
                return server;
            }
            last_log = server.log();
        }
        panic!("dovecot did not start; its log:\n{last_log}");
    }

    fn wait_listening(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// `imaps://dmarc@127.0.0.1:PORT/INBOX`.
    pub fn url(&self) -> String {
        format!("imaps://{USER}@127.0.0.1:{}/INBOX", self.port)
    }

    /// The Maildir's files: (cur|new, file name), sorted; Dovecot's own index files left out.
    pub fn files(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for sub in ["cur", "new", "tmp"] {
            if let Ok(list) = std::fs::read_dir(self.maildir.join(sub)) {
                for e in list.flatten() {
                    out.push((
                        sub.to_string(),
                        e.file_name().to_string_lossy().into_owned(),
                    ));
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // TERM lets the master stop its login and mail processes; KILL if it does not go.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Write the config, the passwd-file and the user's Maildir; return the Maildir.
fn setup(dir: &Path, fixture: &Path, cert: &Path, key: &Path, port: u16) -> PathBuf {
    // Running as root, Dovecot gives mail access only to a non-root user: the mail files then
    // belong to `nobody`. Otherwise everything runs as whoever runs the test.
    let probe = dir.join("probe");
    std::fs::write(&probe, "").expect("write");
    let me = std::fs::metadata(&probe).expect("stat");
    let root = me.uid() == 0;
    let (uid, gid) = if root {
        (65534, 65534)
    } else {
        (me.uid(), me.gid())
    };
    let (login_user, internal_user) = if root {
        ("dovenull".to_string(), "dovecot".to_string())
    } else {
        let name = std::env::var("USER").unwrap_or_else(|_| "nobody".to_string());
        (name.clone(), name)
    };
    let home = dir.join("home");
    let maildir = home.join("Maildir");
    copy_dir(fixture, &maildir);
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("mkdir");
    }
    let _ = std::fs::remove_file(maildir.join("tmp/.keep"));
    if root {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        chown_all(&home, uid, gid);
    }
    std::fs::write(
        dir.join("passwd"),
        format!(
            "{USER}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{}::\n",
            home.display()
        ),
    )
    .expect("passwd");
    let dh = Path::new("/usr/share/dovecot/dh.pem");
    let conf = format!(
        r#"protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
default_login_user = {login_user}
default_internal_user = {internal_user}
ssl = required
# A wrong password is part of the test: answer it at once.
auth_failure_delay = 0
ssl_cert = <{cert}
ssl_key = <{key}
{dh}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = {d}/passwd
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
"#,
        d = dir.display(),
        cert = cert.display(),
        key = key.display(),
        dh = if dh.exists() {
            format!("ssl_dh = <{}", dh.display())
        } else {
            String::new()
        },
    );
    std::fs::write(dir.join("dovecot.conf"), conf).expect("conf");
    maildir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("fixture").flatten() {
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).expect("copy");
        }
    }
}

fn chown_all(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("dir").flatten() {
            chown_all(&entry.path(), uid, gid);
        }
    }
}
