"""`wsgistack proxy`: the reverse proxy and load balancer (nginx's job in the stack)."""
