//! The `dkim-relay` command line. `anyhow` stays here and in `app`.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use dkim_relay::tools::cli as tools;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "dkim-relay",
    version,
    about = "Outbound DKIM-signing SMTP submission relay"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay.
    Serve {
        /// Configuration file (default: $DKIM_RELAY_CONFIG, else /etc/dkim-relay/config.yaml).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Load and validate the configuration, keys and certificates; print a summary.
    CheckConfig {
        /// Configuration file (default: $DKIM_RELAY_CONFIG, else /etc/dkim-relay/config.yaml).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Read a password (stdin, or the terminal without echo) and print its argon2id hash.
    HashPassword,
    /// Rotate a domain's key: new key and selector, signing once DNS serves it (--status: states).
    #[command(long_about = ROTATE_HELP)]
    Rotate {
        /// The signing domain to rotate.
        #[arg(long, required_unless_present = "status")]
        domain: Option<String>,
        /// Key type of the new key (it replaces the configured selectors of the same type).
        #[arg(long, default_value = "rsa2048", value_parser = ["rsa2048", "rsa3072", "rsa4096", "ed25519"])]
        algorithm: String,
        /// Directory for the new key (default: that of the domain's configured keys).
        #[arg(long)]
        out: Option<PathBuf>,
        /// How long the replaced selectors stay published after the switch.
        #[arg(long, default_value = "7d")]
        grace: String,
        /// Show each selector's state instead of rotating.
        #[arg(long)]
        status: bool,
        /// Configuration file (default: $DKIM_RELAY_CONFIG, else /etc/dkim-relay/config.yaml).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Make a new DKIM key (DIR/D.S.pem, mode 0600) and print the DNS record to publish.
    #[command(long_about = KEYGEN_HELP)]
    Keygen {
        /// Signing domain (d=).
        #[arg(long)]
        domain: String,
        /// Selector (s=); the record goes at S._domainkey.D.
        #[arg(long)]
        selector: String,
        /// Key type.
        #[arg(long, default_value = "rsa2048",
              value_parser = ["rsa2048", "rsa3072", "rsa4096", "ed25519"])]
        algorithm: String,
        /// Directory for the key file (created 0700 if missing).
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Check each configured domain's DKIM, SPF and DMARC records; exit 1 on any FAIL.
    DnsCheck {
        /// Configuration file (default: $DKIM_RELAY_CONFIG, else /etc/dkim-relay/config.yaml).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// Check only this configured domain.
        #[arg(long)]
        domain: Option<String>,
        /// Output format.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
    /// Verify every DKIM signature of a message and say why one fails.
    Verify {
        /// The message files, or - for stdin (default). With several, each result line starts
        /// with its file's name; the exit status is 1 when any message fails.
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Verify with this private key's public half instead of DNS.
        #[arg(long)]
        key: Option<PathBuf>,
        /// With --key: only signatures with this d=.
        #[arg(long)]
        domain: Option<String>,
        /// With --key: only signatures with this s=.
        #[arg(long)]
        selector: Option<String>,
        /// Configuration file whose dns.nameservers to use (default: as for serve; the system
        /// resolver when none is readable).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// sendmail-compatible submission: the message on stdin, handed to the relay (see
    /// docs/sendmail.md). The same as invoking the binary as `sendmail`.
    #[command(disable_help_flag = true)]
    Sendmail {
        /// sendmail flags (-t -i -oi -f ADDR -F NAME -v -bm -bp -B8BITMIME …) and recipients.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Print a day's TLS reports (RFC 8460) from the results in the spool, or send them now.
    #[command(long_about = TLS_REPORT_HELP)]
    TlsReport {
        /// Configuration file (default: $DKIM_RELAY_CONFIG, else /etc/dkim-relay/config.yaml).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// The day (UTC): YYYY-MM-DD, today or yesterday.
        #[arg(long, default_value = "yesterday")]
        day: String,
        /// Send the reports to each domain's rua now (each domain's report goes once a day).
        #[arg(long)]
        send: bool,
    },
    /// Look at and act on the queue (safe while serve runs). Invoked as `mailq`: list.
    Queue {
        /// Configuration file (default: $DKIM_RELAY_CONFIG, else /etc/dkim-relay/config.yaml).
        /// Before or after the action: `queue -c FILE list` and `queue list -c FILE`.
        #[arg(short = 'c', long = "config", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: QueueCommand,
    },
    /// Read DMARC aggregate reports and tell, per domain, whether p=reject would drop legitimate mail.
    #[command(long_about = DMARC_REPORT_HELP)]
    DmarcReport {
        /// Report files (.xml, .gz, .zip), e-mails (.eml), mbox files, Maildirs, or directories
        /// of these (what each is, is told by the content).
        #[arg(required_unless_present = "imap", value_name = "INPUT")]
        inputs: Vec<PathBuf>,
        /// Configuration file telling which sources are this relay (default: $DKIM_RELAY_CONFIG,
        /// else /etc/dkim-relay/config.yaml; without one no source is recognised as the relay).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// Output format.
        #[arg(long, default_value = "text", value_parser = ["text", "json", "html"])]
        format: String,
        /// Write the report to FILE (replaced whole) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Count only reports of this day (UTC) and later.
        #[arg(long, value_name = "YYYY-MM-DD")]
        since: Option<String>,
        /// Also read the reports in an IMAP mailbox, without changing it
        /// (imaps://USER@HOST[:PORT]/MAILBOX).
        #[arg(long, value_name = "URL")]
        imap: Option<String>,
        /// File whose first line is the IMAP password (default: $DKIM_RELAY_IMAP_PASSWORD).
        #[arg(long, value_name = "FILE", requires = "imap")]
        password_file: Option<PathBuf>,
        /// CA certificate(s) to trust for --imap besides the system's and $SSL_CERT_FILE (a
        /// self-signed server certificate listed here is trusted for its names).
        #[arg(long, value_name = "FILE", requires = "imap")]
        ca_file: Option<PathBuf>,
    },
    /// Tell real bounces from backscatter (BATV): a Postfix policy server, or one check.
    #[command(long_about = BOUNCE_CHECK_HELP)]
    BounceCheck {
        /// Configuration file (default: $DKIM_RELAY_CONFIG, else /etc/dkim-relay/config.yaml).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// One check: the message's envelope recipient.
        #[arg(long, requires = "sender", conflicts_with_all = ["listen", "metrics"])]
        recipient: Option<String>,
        /// One check: the message's envelope sender ('' or '<>' for a bounce).
        #[arg(long, requires = "recipient", allow_hyphen_values = true)]
        sender: Option<String>,
        /// One check: the address the message came from (for envelope_tagging.accept_bounces_from).
        #[arg(long, requires = "recipient", value_name = "IP")]
        client: Option<std::net::IpAddr>,
        /// Serve Postfix policy requests here: unix:/path or inet:127.0.0.1:10040 (repeatable).
        #[arg(long, value_name = "ENDPOINT", required_unless_present = "recipient")]
        listen: Vec<String>,
        /// File mode of the unix sockets, octal.
        #[arg(long, default_value = "0666")]
        socket_mode: String,
        /// Serve /metrics and /healthz on this address (ip:port).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<String>,
    },
}

const BOUNCE_CHECK_HELP: &str =
    "Tell real bounces from backscatter (BATV, see docs/backscatter.md).

With envelope_tagging in the configuration, the relay sends the mail of the listed domains with \
a tagged envelope sender (prvs=KDDDSSSSSS=user@example.com). A bounce (null sender) that comes \
back to an untagged address of those domains, or with an expired or wrong tag, answers mail the \
domain never sent: backscatter. Only the configuration's envelope_tagging section and its \
secrets file are read.

As a Postfix policy server (check_policy_service in smtpd_recipient_restrictions):
  dkim-relay bounce-check -c FILE --listen inet:127.0.0.1:10040 [--metrics 127.0.0.1:9188]
answers `action=REJECT 5.7.1 ...` for backscatter and `action=DUNNO` for everything else. \
SIGHUP reloads the configuration and secrets; SIGTERM stops it.

As one check, for other MTAs and Sieve filters:
  dkim-relay bounce-check -c FILE --sender '' --recipient prvs=0123abcdef=user@example.com \
      [--client 203.0.113.7]
prints the verdict. A bounce from an address in envelope_tagging.accept_bounces_from (the \
relay's own DSNs, which go to the untagged sender) is accepted. Exit status: 0 accept (a valid tag, or nothing to check: not a bounce, \
another domain, postmaster), 1 backscatter, 2 usage error, 3 the configuration or secrets file \
cannot be used.";

#[derive(Subcommand)]
enum QueueCommand {
    /// Every queued message: id, age, size, sender, recipients with their state.
    List,
    /// One message: envelope, each recipient's last outcome and next attempt, header.
    Show { id: String },
    /// Attempt delivery now (tells a running relay with SIGUSR1).
    Retry {
        /// The message to retry.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Retry every queued message.
        #[arg(long)]
        all: bool,
    },
    /// Remove a message without delivering it.
    Delete { id: String },
}

const KEYGEN_HELP: &str = "Make a new DKIM private key and print the DNS record to publish.

The key is written as PKCS#8 PEM to DIR/D.S.pem with mode 0600; an existing file is never \
overwritten. The record is printed in zone-file syntax, split into strings of at most 255 bytes \
(the most one TXT string holds), followed by a comment line with the bare value for DNS panels \
that take one value without quotes.

rsa2048 is the default because every receiver verifies it. ed25519 (RFC 8463) keys are short \
and fast, but some receivers still do not verify them. To get both, dual-sign: generate one RSA \
and one Ed25519 key with two selectors and list both under the domain in the config; every \
selector listed signs, and receivers use the signature they understand.";

/// `mailq`, `sendmail -bp`: the queue of the configuration found as for serve.
fn list_queue() -> u8 {
    let path = dkim_relay::config::resolve_path(None);
    dkim_relay::tools::queue::run(&path, dkim_relay::tools::queue::Action::List)
}

const TLS_REPORT_HELP: &str = "Print a day's TLS reports (RFC 8460), or send them now.

With delivery.tls_reports on, the relay counts every session to an MX host per recipient \
domain and UTC day (successes, and failures by RFC 8460 result type) in <spool_dir>/tls-reports/, \
and shortly after each midnight UTC sends the previous day's report to every domain whose \
_smtp._tls TXT record asks for one.

Without --send: the reports of --day (default yesterday; YYYY-MM-DD, today or yesterday, UTC) \
are printed as a JSON array, one RFC 8460 report per recipient domain. Nothing is sent.

--send: each domain's report goes to its rua now: https: addresses get a POST of the gzip'd \
JSON (application/tlsrpt+gzip), mailto: addresses a message queued in the spool (DKIM-signed \
with the key of the hostname's domain) that the running relay is woken to deliver. A domain's \
report is sent once per day, whoever sends it: the relay will not send a day sent by hand.

Exit status: 0 done, 1 a report could not be sent or a domain's record not looked up, 2 the \
configuration or the spool is unusable.";

const DMARC_REPORT_HELP: &str =
    "Read DMARC aggregate reports and tell, per domain, whether moving to \
p=reject would drop legitimate mail.

Give the reports as they arrive at your rua= address: report files (.xml, .xml.gz/.gz, or .zip holding one or more XML files), e-mails (.eml: every attachment that is a report, whatever its Content-Type), mbox files, Maildir directories (cur/ and new/), or directories holding any of these; what each is, is told by its content. Messages without a report are skipped and counted. The same report (reporter and report id) seen twice is counted once. Each report may decompress to at most 100 MiB. --since YYYY-MM-DD counts only reports of that day (UTC) and later.

--imap imaps://USER@HOST[:PORT]/MAILBOX reads a mailbox on an IMAP server without changing it \
(EXAMINE and BODY.PEEK: no flag set, nothing moved); the password is the first line of \
--password-file, else $DKIM_RELAY_IMAP_PASSWORD; the certificate is checked against the system \
roots, $SSL_CERT_FILE and --ca-file (a self-signed server certificate listed there is trusted \
for its names).

--format html writes one self-contained page (no script, nothing fetched) with, per domain, \
messages per day by outcome, what receivers did with the failing mail, the sources and the \
verdict; --out FILE writes it (or the text or JSON) to FILE, replaced whole.

Per policy domain it lists every source address that sent mail as the domain, largest first: \
messages, how many passed DMARC, DKIM and SPF (aligned), the From domains, the DKIM signatures \
(d=, s=) and SPF domains receivers saw, and what the source looks like: this relay (its \
public_addresses, else what hostname resolves to, from -c), relay-signed mail from another \
address, a sender that passes without the relay, mail broken by forwarding, a source that fails \
but authenticates as something (looks legitimate), or one that authenticates as nothing (likely \
forgery).

The verdict is READY when no legitimate-looking source fails DMARC, else NOT READY with what to \
do for each such source (send it through the relay, fix its DKIM key, ...). It is a judgement on \
the evidence in the reports, not proof: rare senders may not appear yet.

Exit status: 0 when every input was read (whatever the verdict); 1 when an input, or a record \
in one, could not be read (each is named on stderr and left out; the others are still \
reported), when -c names a configuration that cannot be loaded, or when --out cannot be \
written; 2 for a --since that is not a date.";

fn main() -> ExitCode {
    // Every command: a reader that goes away (`| head`) ends us quietly, never with a panic.
    dkim_relay::cli_io::install();
    // Invoked through a `sendmail` or `mailq` symlink: behave as that program.
    let mut argv = std::env::args_os();
    let program = argv
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    match program.as_str() {
        "sendmail" => {
            let args: Vec<OsString> = argv.collect();
            return ExitCode::from(dkim_relay::sendmail::run(&args, list_queue));
        }
        // mailq's own flags (-v, -Ac…) change nothing here.
        "mailq" => return ExitCode::from(list_queue()),
        _ => {}
    }
    // `dkim-relay sendmail …`: the arguments exactly as given, `--` included (clap would eat it).
    let args: Vec<OsString> = argv.collect();
    if args.first().is_some_and(|a| a == "sendmail") {
        return ExitCode::from(dkim_relay::sendmail::run(&args[1..], list_queue));
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Sendmail { args } => ExitCode::from(dkim_relay::sendmail::run(&args, list_queue)),
        Command::TlsReport { config, day, send } => {
            let path = dkim_relay::config::resolve_path(config.as_deref());
            ExitCode::from(dkim_relay::tls_report_admin::run(&path, Some(&day), send))
        }
        Command::Queue { config, action } => {
            use dkim_relay::tools::queue::Action;
            let path = dkim_relay::config::resolve_path(config.as_deref());
            let action = match action {
                QueueCommand::List => Action::List,
                QueueCommand::Show { id } => Action::Show(id),
                QueueCommand::Retry { id, all: _ } => Action::Retry(id),
                QueueCommand::Delete { id } => Action::Delete(id),
            };
            ExitCode::from(dkim_relay::tools::queue::run(&path, action))
        }
        Command::Serve { config } => {
            let path = dkim_relay::config::resolve_path(config.as_deref());
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("dkim-relay: cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match runtime.block_on(dkim_relay::app::serve(&path)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("dkim-relay: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::CheckConfig { config } => {
            ExitCode::from(tools::check_config_command(config.as_deref()))
        }
        Command::HashPassword => ExitCode::from(tools::hash_password_command()),
        Command::Rotate {
            domain,
            algorithm,
            out,
            grace,
            status,
            config,
        } => ExitCode::from(tools::rotate_command(
            domain.as_deref(),
            &algorithm,
            out.as_deref(),
            &grace,
            status,
            config.as_deref(),
        )),
        Command::Keygen {
            domain,
            selector,
            algorithm,
            out,
        } => ExitCode::from(tools::keygen_command(&domain, &selector, &algorithm, &out)),
        Command::DnsCheck {
            config,
            domain,
            format,
        } => ExitCode::from(tools::dns_check_command(
            config.as_deref(),
            domain.as_deref(),
            format == "json",
        )),
        Command::Verify {
            files,
            key,
            domain,
            selector,
            config,
        } => ExitCode::from(tools::verify_command(
            &files,
            key.as_deref(),
            domain.as_deref(),
            selector.as_deref(),
            config.as_deref(),
        )),
        Command::BounceCheck {
            config,
            recipient,
            sender,
            client,
            listen,
            socket_mode,
            metrics,
        } => {
            use dkim_relay::backscatter::command;
            let path = dkim_relay::config::resolve_path(config.as_deref());
            ExitCode::from(match (recipient, sender) {
                (Some(r), Some(s)) => command::one_shot(&path, &s, &r, client),
                _ => command::daemon(&path, &listen, &socket_mode, metrics.as_deref()),
            })
        }
        Command::DmarcReport {
            inputs,
            config,
            format,
            out,
            since,
            imap,
            password_file,
            ca_file,
        } => {
            use dkim_relay::tools::dmarc_report::{command, Format, Options};
            let options = Options {
                inputs,
                config,
                format: match format.as_str() {
                    "json" => Format::Json,
                    "html" => Format::Html,
                    _ => Format::Text,
                },
                out,
                since,
                imap,
                password_file,
                ca_file,
            };
            ExitCode::from(command(&options))
        }
    }
}

const ROTATE_HELP: &str = "Rotate a domain's DKIM key in stages, with DNS changed by hand.

`rotate --domain D` writes a new key with a fresh selector (sYYYYMMDDr or ...e) and prints the TXT \
record to publish. The rotation is pending: `serve` keeps signing with the configured selectors \
until DNS serves the new key (checked every dns.check_interval), then signs with the new selector \
in place of the configured selectors of the same key type, which must stay published for the \
grace period. `rotate --status` shows every selector's state. Finish by putting the new selector \
in the configuration and removing the old one (and its DNS record once the grace period ended).";
