namespace MiniGpt.Train;

/// <summary>Thrown for a malformed command line; exit code 2.</summary>
public sealed class UsageError(string message) : Exception(message);
