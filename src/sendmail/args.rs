//! The sendmail command line, as the programs that call `/usr/sbin/sendmail` write it: getopt
//! style (`-ti`, `-fADDR` or `-f ADDR`), options anywhere before `--` (GNU permutation, as
//! Postfix's sendmail accepts them), the legacy options old programs still pass accepted and
//! ignored. Pure: arguments in, `Options` or a usage error out.

use std::ffi::OsString;

/// What the caller asked for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-t`: recipients from To/Cc/Bcc (plus the arguments).
    pub from_headers: bool,
    /// `-i`, `-oi`: a lone `.` line does not end the message.
    pub ignore_dots: bool,
    /// `-f`/`-r`: the envelope sender (as given; `<>` or empty is the null sender).
    pub sender: Option<String>,
    /// `-F`: the full name for a From header we add.
    pub full_name: Option<String>,
    /// `-v`: show the SMTP conversation on stderr.
    pub verbose: bool,
    /// `-B8BITMIME`: the body is 8-bit.
    pub eight_bit: bool,
    /// `-bp`: list the queue instead of sending.
    pub list_queue: bool,
    /// Recipients given as arguments (each may hold several, comma-separated).
    pub recipients: Vec<String>,
}

/// Options that take a value and are accepted without effect: `-L tag`, `-N dsn`, `-R ret`,
/// `-V envid`, `-h hops`, `-O opt=value`, `-X logfile`.
const IGNORED_WITH_VALUE: &[char] = &['L', 'N', 'R', 'V', 'h', 'O', 'X'];
/// Flags accepted without effect: `-m` (me too), `-G` (gateway), `-U` (initial submission),
/// `-n` (no aliasing), `-e` (old error mode prefix, usually written `-oe…`).
const IGNORED_FLAGS: &[char] = &['m', 'G', 'U', 'n', 'e'];

/// Parse the arguments after the program name.
pub fn parse(args: &[OsString]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut i = 0;
    let mut only_recipients = false;
    while i < args.len() {
        let arg = args[i]
            .to_str()
            .ok_or_else(|| format!("argument {} is not valid UTF-8", i + 1))?;
        i += 1;
        if only_recipients || arg == "-" || !arg.starts_with('-') {
            o.recipients.push(arg.to_string());
            continue;
        }
        if arg == "--" {
            only_recipients = true;
            continue;
        }
        let body = &arg[1..];
        for (pos, flag) in body.char_indices() {
            let rest = &body[pos + flag.len_utf8()..];
            let takes_value = matches!(flag, 'f' | 'r' | 'F' | 'B' | 'b' | 'o' | 'C')
                || IGNORED_WITH_VALUE.contains(&flag);
            if !takes_value {
                match flag {
                    't' => o.from_headers = true,
                    'i' => o.ignore_dots = true,
                    'v' => o.verbose = true,
                    f if IGNORED_FLAGS.contains(&f) => {}
                    f => return Err(format!("unknown option -{f}")),
                }
                continue;
            }
            // The value is the rest of this argument, or else the next argument.
            let value = if !rest.is_empty() {
                rest.to_string()
            } else {
                let v = args
                    .get(i)
                    .and_then(|v| v.to_str())
                    .ok_or_else(|| format!("option -{flag} needs a value"))?;
                i += 1;
                v.to_string()
            };
            apply(&mut o, flag, &value)?;
            break;
        }
    }
    Ok(o)
}

fn apply(o: &mut Options, flag: char, value: &str) -> Result<(), String> {
    match flag {
        'f' | 'r' => o.sender = Some(value.to_string()),
        'F' => o.full_name = Some(value.to_string()),
        'B' => match value.to_ascii_uppercase().as_str() {
            "8BITMIME" => o.eight_bit = true,
            "7BIT" => o.eight_bit = false,
            _ => return Err(format!("unknown body type -B{value} (8BITMIME or 7BIT)")),
        },
        'b' => match value {
            "m" => {}
            "p" => o.list_queue = true,
            _ => {
                return Err(format!(
                    "mode -b{value} is not supported (only -bm to send and -bp to list the queue)"
                ))
            }
        },
        // -oi is -i; every other -oX… (-oem, -odb, -oee, -om, -oXvalue) is a legacy setting of
        // the old sendmail daemon with no meaning for a submission client.
        'o' if value == "i" => o.ignore_dots = true,
        // An alternative sendmail.cf: silently using ours instead could send mail somewhere
        // the caller did not mean.
        'C' => return Err(
            "-C is not supported: set $DKIM_RELAY_SENDMAIL_CONFIG to choose the sendmail config"
                .to_string(),
        ),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, String> {
        parse(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn php_cron_git_and_mail_command_lines() {
        let php = p(&["-t", "-i"]).unwrap();
        assert!(php.from_headers && php.ignore_dots && php.recipients.is_empty());
        assert_eq!(p(&["-ti"]).unwrap(), php);
        let cron = p(&["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"]).unwrap();
        assert_eq!(cron.full_name.as_deref(), Some("CronDaemon"));
        assert!(cron.ignore_dots && cron.eight_bit);
        assert_eq!(cron.recipients, vec!["root"]);
        let git = p(&[
            "-i",
            "-f",
            "alice@example.com",
            "a@example.net",
            "b@example.net",
        ])
        .unwrap();
        assert_eq!(git.sender.as_deref(), Some("alice@example.com"));
        assert_eq!(git.recipients, vec!["a@example.net", "b@example.net"]);
        let mail = p(&["-oi", "-r", "x@example.com", "--", "-odd@example.net"]).unwrap();
        assert!(mail.ignore_dots);
        assert_eq!(mail.sender.as_deref(), Some("x@example.com"));
        assert_eq!(mail.recipients, vec!["-odd@example.net"]);
    }

    #[test]
    fn legacy_options_are_accepted_and_ignored() {
        let o = p(&[
            "-odb", "-odi", "-oem", "-oee", "-om", "-oXfoo", "-U", "-m", "-bm", "-Btest",
        ]);
        assert!(o.is_err(), "an unknown body type is refused");
        let o = p(&[
            "-odb", "-odi", "-oem", "-oee", "-om", "-oXfoo", "-U", "-m", "-bm",
        ])
        .unwrap();
        assert!(!o.ignore_dots && !o.from_headers);
        assert!(p(&["-bp"]).unwrap().list_queue);
        assert!(p(&["-N", "never", "-R", "hdrs", "-V", "id", "-h", "3", "-L", "tag"]).is_ok());
        assert!(p(&["-B", "7BIT", "-v"]).unwrap().verbose);
    }

    #[test]
    fn bad_usage_is_refused_with_a_reason() {
        assert_eq!(p(&["-q"]).unwrap_err(), "unknown option -q");
        assert!(p(&["-f"]).unwrap_err().contains("needs a value"));
        assert!(p(&["-bs"]).unwrap_err().contains("not supported"));
        assert!(p(&["-C", "/etc/mail/sendmail.cf"]).is_err());
    }

    #[test]
    fn options_after_recipients_still_count() {
        let o = p(&["a@example.net", "-f", "me@example.com"]).unwrap();
        assert_eq!(o.recipients, vec!["a@example.net"]);
        assert_eq!(o.sender.as_deref(), Some("me@example.com"));
    }
}
