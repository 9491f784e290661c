"""Workers claim tasks from the database queue and run them; the reaper recovers lost ones."""
