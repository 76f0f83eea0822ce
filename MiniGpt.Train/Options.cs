using System.Text;

namespace MiniGpt.Train;

/// <summary>
/// The options one verb takes, each an <see cref="Option"/> declared once, and after <see cref="Parse"/> the
/// values given: "--name value", "--name=value" or a bare "--flag". Anything undeclared is an error naming
/// the verb's --help; a given value that is not of its option's type, or fails its checks, is one naming the
/// option. Get then reads an option back typed, its default when it was not given.
/// </summary>
public sealed class Options
{
    private readonly string _verb;
    private readonly string _summary;
    private readonly List<Option> _decl = new();
    private readonly Dictionary<string, string> _given = new(StringComparer.Ordinal);
    private readonly List<Option> _givenInOrder = new();
    private readonly Dictionary<string, object?> _values = new(StringComparer.Ordinal);

    public Options(string verb, string summary, params IEnumerable<Option> options)
    {
        _verb = verb; _summary = summary;
        Add(options);
    }

    /// <summary>Declares more options (a group several verbs share), listed by --help in this order.</summary>
    public Options Add(params IEnumerable<Option> options)
    {
        foreach (var o in options)
        {
            if (_decl.Any(d => d.Name == o.Name)) throw new InvalidOperationException($"'{_verb}' declares --{o.Name} twice");
            _decl.Add(o);
        }
        return this;
    }

    public bool HelpRequested { get; private set; }

    /// <summary>The declared option names, in --help order.</summary>
    public IEnumerable<string> DeclaredNames => _decl.Select(d => d.Name);

    /// <summary>Reads args: first their form, then (unless --help is asked for) each given value's type and checks.</summary>
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
            var d = _decl.Find(x => x.Name == name) ?? throw new UsageError(
                $"unknown option --{name} for '{_verb}'{(Nearest(name) is { } near ? $": did you mean --{near}?" : "")} (see '{_verb} --help')");
            if (d.IsFlag) value ??= "true";
            else if (value == null)
            {
                if (i + 1 >= args.Length) throw new UsageError($"option --{name} needs a value (see '{_verb} --help')");
                value = args[++i];
            }
            if (_given.ContainsKey(name)) throw new UsageError($"option --{name} is given twice");
            _given[name] = value;
            _givenInOrder.Add(d);
        }
        if (!HelpRequested)
            foreach (var d in _givenInOrder) _values[d.Name] = d.Convert(_given[d.Name]);
        return this;
    }

    /// <summary>
    /// The declared name a mistyped one most likely meant: the nearest by edit distance (EditDistance), if at
    /// most a third of its length away (at least 1, at most 3: "--stpes" → steps, "--lr-min" is not min-lr's typo).
    /// </summary>
    internal string? Nearest(string name)
    {
        string? best = null;
        int bestD = int.MaxValue;
        foreach (var d in _decl.Select(d => d.Name).Append("help"))
        {
            int e = EditDistance.Of(name, d);
            if (e < bestD) (best, bestD) = (d, e);
        }
        return bestD <= Math.Clamp(name.Length / 3, 1, 3) ? best : null;
    }

    public bool Has(Option option) => _given.ContainsKey(Declared(option).Name);

    /// <summary>The options given on the command line (without --help).</summary>
    public IEnumerable<string> GivenNames => _givenInOrder.Select(d => d.Name);

    /// <summary>The option's value: as given, else its default; a required option that is missing is a UsageError.</summary>
    public T Get<T>(Option<T> option)
    {
        Declared(option);
        if (_values.TryGetValue(option.Name, out var v)) return (T)v!;
        if (option.RequiredAs is { } placeholder) throw new UsageError($"{_verb} needs --{option.Name} {placeholder}");
        return option.Default;
    }

    private Option Declared(Option option) =>
        _decl.Find(d => d.Name == option.Name) ?? throw new InvalidOperationException($"'{_verb}' reads --{option.Name} without declaring it");

    public string Help()
    {
        var sb = new StringBuilder();
        sb.AppendLine(_summary).AppendLine().AppendLine("options:");
        // the help column starts after the longest name and value name up to MaxLeft; a longer one (a choice list)
        // takes its own line, so one option does not push every help line to the right
        int w = _decl.Select(d => Left(d).Length).Where(n => n <= MaxLeft).DefaultIfEmpty(MaxLeft).Max() + 4;
        foreach (var d in _decl)
        {
            string left = Left(d);
            sb.Append("  ").Append(left.Length <= w - 2 ? left.PadRight(w) : left + "\n" + new string(' ', w + 2)).Append(d.Help);
            if (d.IsRequired) sb.Append(" [required]");
            else if (!d.IsFlag) sb.Append(" [default: ").Append(d.ShownDefault is { Length: > 0 } s ? s : "none").Append(']');
            sb.AppendLine();
        }
        sb.Append("  ").Append("--help".PadRight(w)).AppendLine("show this help");
        return sb.ToString();
    }

    private const int MaxLeft = 34;

    /// <summary>Every declared option, in --help order.</summary>
    internal IReadOnlyList<Option> Declarations => _decl;

    private static string Left(Option d) => d.IsFlag ? $"--{d.Name}" : $"--{d.Name} {d.ValueName}";
}
