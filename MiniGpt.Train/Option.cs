using System.Globalization;

namespace MiniGpt.Train;

/// <summary>
/// One command-line option, declared once: its name, its help line, its default and how --help shows it,
/// and how its text becomes a typed value (Option&lt;T&gt;). A verb lists the options it takes in an
/// <see cref="Options"/> and reads each back with Options.Get; an option several verbs take means the same
/// in each and is one object (SharedOptions, ModelOptions).
/// </summary>
public abstract class Option
{
    private protected Option(string name, string help, string? shownDefault, bool isFlag, string? requiredAs, string? valueName)
    {
        Name = name; Help = help; ShownDefault = shownDefault; IsFlag = isFlag; RequiredAs = requiredAs; ValueName = valueName;
    }

    public string Name { get; }
    public string Help { get; }
    /// <summary>The default as --help shows it ("" shows as none); null for a flag or a required option.</summary>
    public string? ShownDefault { get; }
    /// <summary>Given bare (--name) for true; --name=false also parses.</summary>
    public bool IsFlag { get; }
    /// <summary>A required option's placeholder in the error that it is missing ("F" in "eval needs --checkpoint F").</summary>
    public string? RequiredAs { get; }
    public bool IsRequired => RequiredAs != null;

    /// <summary>
    /// What --help shows after the name ("--steps N"): given by the declaration (PATH, a choice list, L.H,…) or
    /// else from the option's name or value type (see <see cref="ValueNames.For"/>); null for a flag.
    /// </summary>
    public string? ValueName { get; }

    /// <summary>The typed value of the text given for the option; a UsageError naming the option when it is not one.</summary>
    internal abstract object? Convert(string text);

    /// <summary>An option of this verb with its own help line (and, given shown, its own description of the default): the same name, type, default and checks.</summary>
    public abstract Option WithHelpLine(string help, string? shown = null);

    public static Option<int> Int(string name, string help, int @default, string? shown = null) =>
        new(name, help, @default, shown ?? Show(@default), false, null, ParseInt);

    public static Option<ulong> ULong(string name, string help, ulong @default) =>
        new(name, help, @default, Show(@default), false, null, (n, v) =>
            ulong.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out ulong r) ? r
                : throw new UsageError($"option --{n} expects a non-negative integer, got '{v}'"));

    public static Option<float> Float(string name, string help, float @default, string? shown = null) =>
        new(name, help, @default, shown ?? Show(@default), false, null, ParseFloat);

    public static Option<string> Text(string name, string help, string @default) =>
        new(name, help, @default, @default, false, null, (_, v) => v);

    /// <summary>A text option whose absence means something the verb works out (shown says what).</summary>
    public static Option<string?> OptionalText(string name, string help, string shown) =>
        new(name, help, null, shown, false, null, (_, v) => v);

    /// <summary>A text option the verb cannot run without: --help marks it [required].</summary>
    public static Option<string> Required(string name, string help, string placeholder) =>
        new(name, help, null!, null, false, placeholder, (_, v) => v);

    public static Option<bool> Flag(string name, string help) => new(name, help, false, null, true, null, ParseBool);

    /// <summary>A flag whose absence leaves the choice to the verb (null), unlike --name=false.</summary>
    public static Option<bool?> OptionalFlag(string name, string help) => new(name, help, null, null, true, null, (n, v) => ParseBool(n, v));

    /// <summary>An option of any type: parse(name, text) gives the value or throws a UsageError naming the option.</summary>
    public static Option<T> Of<T>(string name, string help, T @default, string shown, Func<string, string, T> parse) =>
        new(name, help, @default, shown, false, null, parse);

    private static string Show<T>(T v) where T : IFormattable => v.ToString(null, CultureInfo.InvariantCulture);

    internal static int ParseInt(string name, string v) =>
        int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int r) ? r
            : throw new UsageError($"option --{name} expects an integer, got '{v}'");

    internal static float ParseFloat(string name, string v) =>
        float.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out float r) && float.IsFinite(r) ? r
            : throw new UsageError($"option --{name} expects a number, got '{v}'");

    private static bool ParseBool(string name, string v) => v.ToLowerInvariant() switch
    {
        "true" or "1" or "yes" or "on" => true,
        "false" or "0" or "no" or "off" => false,
        _ => throw new UsageError($"option --{name} expects true or false, got '{v}'"),
    };
}

/// <summary>An option whose value is a T: parsed from its text, then held to its checks.</summary>
public sealed class Option<T> : Option
{
    private readonly Func<string, string, T> _parse; // (name, text) → value, or a UsageError
    private readonly (Func<T, bool> Ok, string Rule)[] _checks;

    internal Option(string name, string help, T @default, string? shownDefault, bool isFlag, string? requiredAs,
        Func<string, string, T> parse, params (Func<T, bool>, string)[] checks) : this(name, help, @default, shownDefault, isFlag, requiredAs, null, parse, checks) { }

    private Option(string name, string help, T @default, string? shownDefault, bool isFlag, string? requiredAs, string? valueName,
        Func<string, string, T> parse, (Func<T, bool>, string)[] checks)
        : base(name, help, shownDefault, isFlag, requiredAs, isFlag ? null : valueName ?? ValueNames.For(name, typeof(T)))
    {
        Default = @default; _parse = parse; _checks = checks;
    }

    /// <summary>The value when the option is not given (unused for a required option).</summary>
    public T Default { get; }

    /// <summary>The same option, whose given value must also pass ok: otherwise "--name rule, got value" (exit code 2).</summary>
    public Option<T> Check(Func<T, bool> ok, string rule) =>
        new(Name, Help, Default, ShownDefault, IsFlag, RequiredAs, ValueName, _parse, [.. _checks, (ok, rule)]);

    public override Option<T> WithHelpLine(string help, string? shown = null) =>
        new(Name, help, Default, shown ?? ShownDefault, IsFlag, RequiredAs, ValueName, _parse, _checks);

    /// <summary>The same option, shown in --help as "--name valueName" (PATH, L.H,…) rather than its type's name.</summary>
    public Option<T> Shown(string valueName) => new(Name, Help, Default, ShownDefault, IsFlag, RequiredAs, valueName, _parse, _checks);

    /// <summary>The same option, shown as one of choices ("--optimizer {adamw|sgd}"); the parse and its checks are unchanged.</summary>
    public Option<T> Choices(params string[] choices) => Shown("{" + string.Join('|', choices) + "}");

    /// <summary>The same option, whose text is first turned into the value by parse (e.g. a run folder into its checkpoint).</summary>
    public Option<T> ParsedBy(Func<string, string, T> parse) => new(Name, Help, Default, ShownDefault, IsFlag, RequiredAs, ValueName, parse, _checks);

    internal override object? Convert(string text) => Parse(Name, text);

    private T Parse(string name, string text)
    {
        // an empty path would reach File/Directory calls as "" and end in an ArgumentException's stack trace
        if (ValueName == ValueNames.Path && string.IsNullOrWhiteSpace(text))
            throw new UsageError($"--{name} is empty: give a file or folder path (see --help)");
        T v = _parse(name, text);
        foreach (var (ok, rule) in _checks)
            if (!ok(v)) throw new UsageError($"--{name} {rule}, got {v}");
        return v;
    }
}
