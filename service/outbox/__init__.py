"""The outbox: mail and webhooks queued in the transaction of the change they report, then
delivered, retried with backoff and never lost.

`queue` (adding, claiming, releasing, counting), `mail` (rendering and SMTP), `webhooks`
(signing and posting), `delivery` (sending one claimed message and recording the outcome).
"""
