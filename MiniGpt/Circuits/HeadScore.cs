using System.Text.RegularExpressions;

namespace MiniGpt.Circuits;

/// <summary>
/// The role a score gives a head that reaches its threshold ("induction" at ≥ 0.4). A role that
/// <paramref name="Refines"/> another (current-token suppression refines current-token) says more about the same
/// heads: a head with both lists the refining one first, whatever the values.
/// </summary>
public sealed record HeadRole(string Name, double Threshold, string? Refines = null);

/// <summary>
/// One behavioural score of attention heads, as a definition: its name (the snake_case key of circuits.json
/// and the --track-circuits log, e.g. previous_token), the short header of its table column (prev), a
/// one-line description, the hook points it reads per block (attn.hook_pattern, …) and how its [layer][head]
/// grid is computed from the shared probe run (<see cref="HeadProbe"/>), and optionally the role it gives a
/// head at or above a threshold. A score is added by deriving from this class in one file and registering an
/// instance in a <see cref="HeadScoreSet"/> (<see cref="HeadScoreSet.Default"/> for the built-in ones);
/// everything that computes, stores or shows scores iterates over the set (role-giving scores also name their
/// top head on the progress line of train --track-circuits).
/// </summary>
public abstract partial class HeadScore
{
    protected HeadScore(string name, string header, string description, string[] hooks, HeadRole? role = null)
    {
        if (!SnakeCase().IsMatch(name)) throw new ArgumentException($"a score's name is a snake_case key such as previous_token, got '{name}'");
        if (string.IsNullOrWhiteSpace(header) || header.Contains(' ')) throw new ArgumentException($"score {name}: the table header must be one word, got '{header}'");
        if (string.IsNullOrWhiteSpace(description) || description.Contains('\n')) throw new ArgumentException($"score {name}: the description must be one line");
        if (role != null && !(role.Threshold >= 0 && double.IsFinite(role.Threshold))) throw new ArgumentException($"score {name}: the role's threshold must be a finite number ≥ 0");
        Name = name; Header = header; Description = description; Hooks = hooks; Role = role;
    }

    /// <summary>The snake_case key in circuits.json and the log.</summary>
    public string Name { get; }
    /// <summary>The column header of the summary table.</summary>
    public string Header { get; }
    public string Description { get; }
    /// <summary>Hook points read in every block, without the "blocks.{l}." prefix: the probe caches exactly the union of them.</summary>
    public IReadOnlyList<string> Hooks { get; }
    public HeadRole? Role { get; }

    /// <summary>The name as prose and in report headings: previous_token → previous-token.</summary>
    public string DisplayName => Name.Replace('_', '-');

    /// <summary>The score of every head on the probe, [layer][head].</summary>
    public abstract double[][] Compute(HeadProbe probe);

    [GeneratedRegex("^[a-z][a-z0-9]*(_[a-z0-9]+)*$")]
    private static partial Regex SnakeCase();
}
