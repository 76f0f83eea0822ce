using System.Text;

namespace MiniGpt.Train.Progress;

/// <summary>
/// Console lines of at most <see cref="Columns"/> characters, the width of a default terminal: a log line of
/// " | "-separated fields that drops its least needed fields until it fits, a continuation line under it, and
/// prose wrapped at spaces with a hanging indent under its label.
/// </summary>
public static class ConsoleLine
{
    /// <summary>"step  250/3000": the step right-aligned to the width of the last one, so the columns after it line up.</summary>
    public static string StepField(long step, long steps) =>
        $"step {step.ToString(System.Globalization.CultureInfo.InvariantCulture).PadLeft(steps.ToString(System.Globalization.CultureInfo.InvariantCulture).Length)}/{steps}";

    public const int Columns = 80;
    private const string Separator = " | ";

    /// <summary>The fields joined by " | ", leaving out those that start with a droppable prefix (in that order) while the line is too wide.</summary>
    public static string Fields(List<string> fields, params string[] droppable)
    {
        foreach (string prefix in droppable)
        {
            if (string.Join(Separator, fields).Length <= Columns) break;
            int i = fields.FindIndex(f => f.StartsWith(prefix, StringComparison.Ordinal) || f.EndsWith(prefix, StringComparison.Ordinal));
            if (i >= 0) fields.RemoveAt(i);
        }
        return string.Join(Separator, fields);
    }

    /// <summary>
    /// Fields on lines under a log line whose first field is first: "{spaces}| a | b", as many lines as it takes
    /// to keep each within Columns (a field wider than a line gets one to itself).
    /// </summary>
    public static string Under(string first, IEnumerable<string> fields)
    {
        string indent = new string(' ', first.Length + 1) + "| ";
        var sb = new StringBuilder(indent);
        int lineStart = 0;
        bool fresh = true;
        foreach (string f in fields)
        {
            if (!fresh && sb.Length - lineStart + Separator.Length + f.Length > Columns)
            {
                sb.Append('\n');
                lineStart = sb.Length;
                sb.Append(indent);
                fresh = true;
            }
            if (!fresh) sb.Append(Separator);
            sb.Append(f);
            fresh = false;
        }
        return sb.ToString();
    }

    /// <summary>
    /// A list "label: a, b, c" wrapped after its commas (or colons) into lines of at most Columns, every line after the first
    /// indented by indent spaces. Items stay whole ("no LayerNorm", "batch 32", "(char, 65 tokens)"), so an item longer than a line
    /// (one ending in a path) makes a longer line rather than a broken one.
    /// </summary>
    public static string Wrap(string text, int indent)
    {
        if (text.Length <= Columns) return text;
        var sb = new StringBuilder();
        int lineStart = 0;
        // items end at ", " or ": " outside parentheses (the punctuation stays with the item): "(char, 65 tokens)" stays whole
        var items = new List<string>();
        int depth = 0, start = 0;
        for (int k = 0; k < text.Length; k++)
        {
            if (text[k] == '(') depth++;
            else if (text[k] == ')') depth = Math.Max(0, depth - 1);
            else if (depth == 0 && text[k] is ',' or ':' && k + 1 < text.Length && text[k + 1] == ' ')
            {
                items.Add(text[start..(k + 1)]);
                start = k + 2;
            }
        }
        items.Add(text[start..]);
        for (int i = 0; i < items.Count; i++)
        {
            string item = items[i];
            if (i > 0 && sb.Length - lineStart + 1 + item.Length > Columns)
            {
                sb.Append('\n');
                lineStart = sb.Length;
                sb.Append(' ', indent);
            }
            else if (i > 0) sb.Append(' ');
            sb.Append(item);
        }
        return sb.ToString();
    }
}
