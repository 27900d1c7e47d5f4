"""Field history, status transitions and time in status, derived from stored issues and their
complete changelogs (pure functions: nothing here reads or writes MongoDB)."""
