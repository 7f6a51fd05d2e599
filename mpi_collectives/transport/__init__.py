"""Moving bytes between ranks: the private communicators, agreements, alarms and drain of a
collective (``channel``), how messages are cut into chunks (``chunks``), whole-message
exchanges (``exchange``), the pipelined mailbox of in-flight chunks (``mailbox``) and the
worker thread of the nonblocking collectives (``nonblocking``). Everything here is
point to point: a failed collective can always be drained."""
