"""Moving bytes between ranks: how messages are cut into chunks (``chunks``), whole-message
exchanges (``exchange``), the pipelined mailbox of in-flight chunks (``mailbox``) and the
worker thread of the nonblocking collectives (``nonblocking``)."""
