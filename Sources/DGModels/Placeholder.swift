// Models live here (issue 6).
