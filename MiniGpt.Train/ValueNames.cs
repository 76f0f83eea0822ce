namespace MiniGpt.Train;

/// <summary>
/// The placeholder --help prints after an option's name ("--steps N", "--lr FLOAT", "--out PATH") when its
/// declaration names none (Option&lt;T&gt;.Shown, .Choices). A string type says nothing of what the text is, so
/// the names that mean the same in every verb (--data, --out, --checkpoint, … are paths; --heads is a list of
/// heads) are named here once; other text falls back to TEXT, numbers to N or FLOAT.
/// </summary>
internal static class ValueNames
{
    public const string Path = "PATH";
    public const string Heads = "L.H,…";

    private static readonly Dictionary<string, string> ByName = new(StringComparer.Ordinal)
    {
        ["data"] = Path, ["val"] = Path, ["out"] = Path, ["checkpoint"] = Path, ["grads"] = Path, ["resume"] = Path,
        ["init-from"] = Path, ["runs-dir"] = Path, ["pairs"] = Path,
        ["heads"] = Heads, ["ablate"] = "{auto|all|none}|" + Heads, ["receivers"] = "{auto|none}|" + Heads,
    };

    public static string For(string name, Type t) => ByName.TryGetValue(name, out var v) ? v : (Nullable.GetUnderlyingType(t) ?? t) switch
    {
        var x when x == typeof(int) || x == typeof(long) || x == typeof(ulong) => "N",
        var x when x == typeof(float) || x == typeof(double) => "FLOAT",
        _ => "TEXT",
    };
}
