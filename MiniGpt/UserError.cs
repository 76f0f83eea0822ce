using System.Text;

namespace MiniGpt;

/// <summary>
/// A mistake in what the user gave (a file, an option, a config). The console app prints the message
/// as one line and exits non-zero, with no stack trace, so every message names the problem and the fix.
/// Messages quote what a file says (tensor names, config values), which may hold line breaks or other
/// control characters: those are escaped (\n, \u001b, …) so the message stays one line that a terminal
/// prints as it is.
/// </summary>
public sealed class UserError(string message) : Exception(OneLine(message))
{
    private static string OneLine(string s)
    {
        bool clean = true;
        foreach (char c in s) if (char.IsControl(c)) { clean = false; break; }
        if (clean) return s;
        var sb = new StringBuilder(s.Length + 8);
        foreach (char c in s)
            sb.Append(c switch
            {
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                _ when char.IsControl(c) => $"\\u{(int)c:x4}",
                _ => c.ToString(),
            });
        return sb.ToString();
    }
}
