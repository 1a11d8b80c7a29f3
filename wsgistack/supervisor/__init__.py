"""The supervisor: programs and their states, log capture, control server and ctl client, config readers."""
