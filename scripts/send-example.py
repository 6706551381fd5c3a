#!/usr/bin/env python3
"""Send one message to the example relay (config/example.yaml) over STARTTLS with AUTH,
using only Python's standard library. The relay's development certificate is self-signed,
so this demo does not verify it."""
import smtplib
import ssl
from email.message import EmailMessage

msg = EmailMessage()
msg["From"] = "App <app@example.com>"
msg["To"] = "someone@example.net"
msg["Subject"] = "hello from dkim-relay's example"
msg.set_content("This message was DKIM-signed by dkim-relay.\n")

context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
with smtplib.SMTP("127.0.0.1", 2587) as smtp:
    smtp.starttls(context=context)
    smtp.login("demo", "demo-password")
    refused = smtp.send_message(msg)
print("sent; refused recipients:", refused or "none")
print("the signed message is in ./outbox/")
