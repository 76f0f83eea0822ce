using System.Globalization;

namespace MiniGpt.Train;

/// <summary>Lists of heads on the command line (circuits --heads, patch --receivers): "1.2,0.3" or "L1H2,L0H3", duplicates dropped.</summary>
internal static class HeadPairs
{
    /// <param name="option">the option's name without dashes, for the error</param>
    /// <param name="example">a valid value to show in the error</param>
    /// <param name="alternatives">what else the option accepts, appended to the error (" (or auto, none)")</param>
    public static List<(int Layer, int Head)> Parse(string s, string option, string example, string alternatives = "")
    {
        var list = new List<(int, int)>();
        foreach (string part in s.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            string p = part.ToUpperInvariant();
            string[] lh = p.StartsWith('L') && p.Contains('H') ? p[1..].Split('H') : p.Split('.');
            if (lh.Length != 2 || !int.TryParse(lh[0], NumberStyles.None, CultureInfo.InvariantCulture, out int l)
                || !int.TryParse(lh[1], NumberStyles.None, CultureInfo.InvariantCulture, out int h))
                throw new UsageError($"--{option} expects layer.head pairs such as {example}{alternatives}, got '{part}'");
            if (!list.Contains((l, h))) list.Add((l, h));
        }
        if (list.Count == 0) throw new UsageError($"--{option} is empty: give layer.head pairs such as {example}{alternatives}");
        return list;
    }
}
