"""Use cases that change state: one function each, which owns its transaction, its audit
entry and its publish-after-commit (`unit_of_work`). The CLI, the admin pages and the admin
JSON API are adapters over these: parse, call, render."""
