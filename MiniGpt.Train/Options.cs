using System.Globalization;
using System.Text;

namespace MiniGpt.Train;

/// <summary>Thrown for a malformed command line; exit code 2.</summary>
public sealed class UsageError(string message) : Exception(message);

/// <summary>
/// A verb's options: declared with a default and a help line, parsed from "--name value",
/// "--name=value" or a bare "--flag". Anything undeclared is an error naming the verb's --help.
/// </summary>
public sealed class Options
{
    private readonly string _verb;
    private readonly string _summary;
    private readonly List<(string Name, string Default, string Help, bool Flag)> _decl = new();
    private const string RequiredMark = "\0required";
    private readonly Dictionary<string, string> _values = new(StringComparer.Ordinal);

    public Options(string verb, string summary) { _verb = verb; _summary = summary; }

    public Options Add(string name, string @default, string help) { _decl.Add((name, @default, help, false)); return this; }
    /// <summary>An option the verb cannot run without: --help marks it [required] instead of a default.</summary>
    public Options Required(string name, string help) { _decl.Add((name, RequiredMark, help, false)); return this; }
    public Options Flag(string name, string help) { _decl.Add((name, "off", help, true)); return this; }

    public bool HelpRequested { get; private set; }

    /// <summary>The declared option names, in --help order.</summary>
    public IEnumerable<string> DeclaredNames => _decl.Select(d => d.Name);

    public Options Parse(string[] args)
    {
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (a is "--help" or "-h") { HelpRequested = true; continue; }
            if (!a.StartsWith("--", StringComparison.Ordinal))
                throw new UsageError($"unexpected argument '{a}' for '{_verb}': options look like --name value (see '{_verb} --help')");
            string name = a[2..];
            string? value = null;
            int eq = name.IndexOf('=');
            if (eq >= 0) { value = name[(eq + 1)..]; name = name[..eq]; }
            var d = _decl.FindIndex(x => x.Name == name);
            if (d < 0) throw new UsageError($"unknown option --{name} for '{_verb}' (see '{_verb} --help')");
            if (_decl[d].Flag) value ??= "true";
            else if (value == null)
            {
                if (i + 1 >= args.Length) throw new UsageError($"option --{name} needs a value (see '{_verb} --help')");
                value = args[++i];
            }
            if (_values.ContainsKey(name)) throw new UsageError($"option --{name} is given twice");
            _values[name] = value;
        }
        return this;
    }

    public bool Has(string name) => _values.ContainsKey(name);

    /// <summary>The options given on the command line (without --help).</summary>
    public IEnumerable<string> GivenNames => _values.Keys;

    public string? Str(string name) => _values.TryGetValue(name, out var v) ? v : null;

    public string Str(string name, string fallback) => Str(name) ?? fallback;

    public int? Int(string name)
    {
        var v = Str(name);
        if (v == null) return null;
        if (!int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int r))
            throw new UsageError($"option --{name} expects an integer, got '{v}'");
        return r;
    }

    public ulong? ULong(string name)
    {
        var v = Str(name);
        if (v == null) return null;
        if (!ulong.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out ulong r))
            throw new UsageError($"option --{name} expects a non-negative integer, got '{v}'");
        return r;
    }

    public float? Float(string name)
    {
        var v = Str(name);
        if (v == null) return null;
        if (!float.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out float r) || !float.IsFinite(r))
            throw new UsageError($"option --{name} expects a number, got '{v}'");
        return r;
    }

    public bool? Bool(string name)
    {
        var v = Str(name);
        if (v == null) return null;
        return v.ToLowerInvariant() switch
        {
            "true" or "1" or "yes" or "on" => true,
            "false" or "0" or "no" or "off" => false,
            _ => throw new UsageError($"option --{name} expects true or false, got '{v}'"),
        };
    }

    public string Help()
    {
        var sb = new StringBuilder();
        sb.AppendLine(_summary).AppendLine().AppendLine("options:");
        int w = _decl.Max(d => d.Name.Length + (d.Flag ? 0 : 6)) + 4;
        foreach (var (name, def, help, flag) in _decl)
        {
            string left = flag ? $"--{name}" : $"--{name} VALUE";
            sb.Append("  ").Append(left.PadRight(w)).Append(help);
            if (def == RequiredMark) sb.Append(" [required]");
            else if (!flag) sb.Append(" [default: ").Append(def.Length > 0 ? def : "none").Append(']');
            sb.AppendLine();
        }
        sb.Append("  ").Append("--help".PadRight(w)).AppendLine("show this help");
        return sb.ToString();
    }
}
