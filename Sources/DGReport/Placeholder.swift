// Reporters live here (issue 7).
