namespace MiniGpt;

/// <summary>
/// A mistake in what the user gave (a file, an option, a config). The console app prints the message
/// as one line and exits non-zero, with no stack trace, so every message names the problem and the fix.
/// </summary>
public sealed class UserError(string message) : Exception(message);
