#!/usr/bin/env python3
"""Rebuild the compressed fixtures from sources/ with the standard library's gzip and zipfile,
the way reporters' own tools make them (deterministic: fixed timestamps). Run from anywhere."""
import gzip, os, zipfile

here = os.path.dirname(os.path.abspath(__file__))
src = os.path.join(here, "sources")

outlook = "protection.outlook.com!example.com!1767225600!1767312000.xml"
with open(os.path.join(src, outlook), "rb") as f, open(os.path.join(here, outlook + ".gz"), "wb") as out:
    out.write(gzip.compress(f.read(), mtime=0))

zipped = os.path.join(here, "example.org!2026-01-01.zip")
with zipfile.ZipFile(zipped, "w", compression=zipfile.ZIP_DEFLATED) as z:
    for name in ["yahoo.com!example.org!1767225600!1767311999.xml",
                 "reporter.example!example.org!1767225600!1767311999.xml"]:
        info = zipfile.ZipInfo(name, date_time=(2026, 1, 2, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(os.path.join(src, name), "rb") as f:
            z.writestr(info, f.read())

# Report e-mails as receivers send them to the rua address, plus ordinary mail that must be
# skipped, as a Maildir (mail/Maildir) and as an mbox (mail/reports.mbox). Deterministic: fixed
# dates, boundaries and message ids.
import base64, email.generator, email.policy, io, quopri, shutil
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.mime.message import MIMEMessage


def read(name):
    with open(os.path.join(src, name), "rb") as f:
        return f.read()


def headers(m, sender, subject, day, n):
    m["From"] = sender
    m["To"] = "dmarc-reports@example.com"
    m["Subject"] = subject
    m["Date"] = "Fri, %02d Jan 2026 06:%02d:00 +0000" % (day, n)
    m["Message-ID"] = "<fixture-%d@%s>" % (n, sender.split("@")[-1].rstrip(">"))
    return m


def attachment(data, maintype, subtype, name):
    part = MIMEBase(maintype, subtype, name=name)
    part.set_payload(base64.encodebytes(data).decode())
    part["Content-Transfer-Encoding"] = "base64"
    part["Content-Disposition"] = 'attachment; filename="%s"' % name
    return part


google_xml = open(os.path.join(here, "google.com!example.com!1767225600!1767311999.xml"), "rb").read()
zbuf = io.BytesIO()
with zipfile.ZipFile(zbuf, "w", compression=zipfile.ZIP_DEFLATED) as z:
    info = zipfile.ZipInfo("google.com!example.com!1767225600!1767311999.xml", date_time=(2026, 1, 2, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, google_xml)

messages = []

# Google: multipart/mixed, a short text, the report as application/zip.
m = MIMEMultipart("mixed", boundary="=_google_1")
headers(m, "noreply-dmarc-support@google.com", "Report domain: example.com Submitter: google.com Report-ID: 4214367012781956001", 2, 1)
m.attach(MIMEText("", "plain"))
m.attach(attachment(zbuf.getvalue(), "application", "zip", "google.com!example.com!1767225600!1767311999.zip"))
messages.append(m)

# Microsoft: an HTML note, the gzip'd report as application/octet-stream.
m = MIMEMultipart("mixed", boundary="=_outlook_2")
headers(m, "DMARC Aggregate Report <dmarcreport@microsoft.com>", "Report Domain: example.com Submitter: protection.outlook.com Report-ID: 8e2d6b0a4c1f4a2b9d3e", 2, 2)
m.attach(MIMEText("<html><body><p>This is a DMARC aggregate report from Microsoft Corporation.</p></body></html>", "html"))
m.attach(attachment(gzip.compress(read(outlook), mtime=0), "application", "octet-stream", outlook + ".gz"))
messages.append(m)

# Yahoo: the gzip'd report as application/gzip, nothing else.
m = MIMEMultipart("mixed", boundary="=_yahoo_3")
headers(m, "Yahoo DMARC Report <noreply@dmarc.yahoo.com>", "Report Domain: example.org Submitter: Yahoo Report-ID: <1767311999.481516>", 2, 3)
m.attach(MIMEText("This is an aggregate report from Yahoo.\n", "plain"))
yahoo = "yahoo.com!example.org!1767225600!1767311999.xml"
m.attach(attachment(gzip.compress(read(yahoo), mtime=0), "application", "gzip", yahoo + ".gz"))
messages.append(m)

# A smaller reporter (RFC 9990 format): base64 text/xml inside multipart/mixed inside
# multipart/alternative.
ns = "reporter.example!example.org!1767225600!1767311999.xml"
inner = MIMEMultipart("mixed", boundary="=_inner_4")
inner.attach(MIMEText("<p>DMARC aggregate report attached.</p>", "html"))
part = MIMEBase("text", "xml", charset="utf-8", name=ns)
part.set_payload(base64.encodebytes(read(ns)).decode())
part["Content-Transfer-Encoding"] = "base64"
inner.attach(part)
m = MIMEMultipart("alternative", boundary="=_outer_4")
headers(m, "dmarc-reports@reporter.example", "DMARC Aggregate Report for example.org", 2, 4)
m.attach(MIMEText("DMARC aggregate report for example.org.\n", "plain"))
m.attach(inner)
messages.append(m)

# The Microsoft report again, forwarded by a colleague as a message/rfc822 whose report is
# quoted-printable text/xml: counted once.
fwd_inner = MIMEMultipart("mixed", boundary="=_fwd_inner_5")
headers(fwd_inner, "dmarcreport@microsoft.com", "Report Domain: example.com Submitter: protection.outlook.com", 2, 50)
part = MIMEBase("text", "xml", charset="utf-8")
part.set_payload(quopri.encodestring(read(outlook)).decode())
part["Content-Transfer-Encoding"] = "quoted-printable"
part["Content-Disposition"] = 'attachment; filename="%s"' % outlook
fwd_inner.attach(part)
m = MIMEMultipart("mixed", boundary="=_fwd_5")
headers(m, "Alice <alice@example.com>", "Fwd: Report Domain: example.com", 3, 5)
m.attach(MIMEText("See the report below.\n", "plain"))
m.attach(MIMEMessage(fwd_inner))
messages.append(m)

# Ordinary mail: a plain confirmation, an HTML newsletter with an image, an invoice in XML.
m = headers(EmailMessage(), "postmaster@example.net", "Please confirm your address", 3, 6)
m.set_content("Reply to this message to confirm that you receive reports for example.com.\n")
messages.append(m)
m = MIMEMultipart("related", boundary="=_news_7")
headers(m, "news@vendor.example", "Our January newsletter: feedback welcome", 3, 7)
m.attach(MIMEText("<html><body><h1>News</h1><p>We value your feedback &amp; ideas.</p><img src=\"cid:logo\"></body></html>", "html"))
img = MIMEBase("image", "png")
img.set_payload(base64.encodebytes(b"\x89PNG\r\n\x1a\n" + bytes(range(64))).decode())
img["Content-Transfer-Encoding"] = "base64"
img["Content-ID"] = "<logo>"
m.attach(img)
messages.append(m)
m = MIMEMultipart("mixed", boundary="=_invoice_8")
headers(m, "billing@vendor.example", "Invoice 2026-001", 3, 8)
m.attach(MIMEText("Your invoice is attached.\n", "plain"))
m.attach(attachment(b"<?xml version=\"1.0\"?>\n<invoice><total>12.00</total></invoice>\n", "application", "xml", "invoice.xml"))
messages.append(m)


def as_bytes(msg):
    out = io.BytesIO()
    email.generator.BytesGenerator(out, policy=email.policy.compat32.clone(linesep="\n"), mangle_from_=False).flatten(msg)
    return out.getvalue()


mail = os.path.join(here, "mail")
maildir = os.path.join(mail, "Maildir")
shutil.rmtree(maildir, ignore_errors=True)
for sub in ("cur", "new", "tmp"):
    os.makedirs(os.path.join(maildir, sub))
open(os.path.join(maildir, "tmp", ".keep"), "w").close()
with open(os.path.join(mail, "reports.mbox"), "wb") as mbox:
    for n, msg in enumerate(messages, start=1):
        raw = as_bytes(msg)
        # Read ones in cur/ (with the Seen flag), the rest still new/.
        name = ("cur", "17673%05d.M%dP1.fixture:2,S" % (n, n)) if n % 2 else ("new", "17673%05d.M%dP1.fixture" % (n, n))
        with open(os.path.join(maildir, *name), "wb") as f:
            f.write(raw)
        mbox.write(b"From MAILER-DAEMON Fri Jan  2 06:%02d:00 2026\n" % n)
        quoted = b"\n".join((b">" + l) if l.lstrip(b">").startswith(b"From ") else l for l in raw.split(b"\n"))
        mbox.write(quoted.rstrip(b"\n") + b"\n\n")
