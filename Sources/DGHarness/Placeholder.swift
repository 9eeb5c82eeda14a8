// The sweep harness lives here (issue 7).
