using System.Collections;

namespace MiniGpt.Circuits;

/// <summary>
/// The registry of head scores: an immutable ordered set that decides which scores are computed (one probe
/// run for all of them), stored (circuits.json, the --track-circuits log) and shown (the table, the HTML
/// report, the plots), in this order everywhere. <see cref="Default"/> holds the built-in scores; a program
/// adds its own with <see cref="With"/> and passes the new set in (CircuitsOptions.Scores, CircuitTracker), so
/// nothing global changes and tests running in parallel each see their own set.
/// It is also the one labeler: a head's roles are those of every role-giving score it reaches (score ≥ the
/// role's threshold), strongest first, ties in registry order; its label is the first role, or "".
/// </summary>
public sealed class HeadScoreSet : IReadOnlyList<HeadScore>
{
    // (before Default: static fields initialise in order, and With reads this one)
    /// <summary>Keys a head's entry in circuits.json or a log line already uses for something else.</summary>
    private static readonly HashSet<string> Reserved =
        ["name", "layer", "head", "roles", "ablation", "mean_ablation", "spectra", "ov_eigenvalue_copying", "qk_eigenvalue_score",
         "step", "loss", "val_loss", "repeat_loss", "labels"];

    /// <summary>The built-in scores. To add one to the tool: a new file in MiniGpt/Circuits/Scores and one line here.</summary>
    public static HeadScoreSet Default { get; } = new HeadScoreSet([])
        .With(new PreviousTokenScore())
        .With(new DuplicateTokenScore())
        .With(new InductionScore())
        .With(new PrefixMatchingScore())
        .With(new CopyingScore())
        .With(new CurrentTokenScore())
        .With(new CurrentTokenSuppressionScore())
        .With(new PreviousTokenSuppressionScore());

    private readonly HeadScore[] _scores;

    private HeadScoreSet(HeadScore[] scores) { _scores = scores; }

    /// <summary>This set with <paramref name="score"/> appended; the name and the role must be new.</summary>
    public HeadScoreSet With(HeadScore score)
    {
        if (Reserved.Contains(score.Name)) throw new ArgumentException($"'{score.Name}' is a key circuits.json or the log already uses: name the score otherwise");
        foreach (var s in _scores)
        {
            if (s.Name == score.Name) throw new ArgumentException($"a score named '{score.Name}' is already registered");
            if (s.Role != null && s.Role.Name == score.Role?.Name) throw new ArgumentException($"the role '{s.Role.Name}' is already given by {s.Name}");
        }
        return new HeadScoreSet([.. _scores, score]);
    }

    public HeadScore this[int index] => _scores[index];
    public int Count => _scores.Length;
    public IEnumerator<HeadScore> GetEnumerator() => ((IEnumerable<HeadScore>)_scores).GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => _scores.GetEnumerator();

    /// <summary>The score of that name, or null.</summary>
    public HeadScore? Find(string name) => _scores.FirstOrDefault(s => s.Name == name);

    /// <summary>The scores that give a role, in registry order.</summary>
    public IEnumerable<HeadScore> RoleScores => _scores.Where(s => s.Role != null);

    /// <summary>The score that gives <paramref name="role"/>, or null.</summary>
    public HeadScore? ForRole(string role) => _scores.FirstOrDefault(s => s.Role?.Name == role);

    /// <summary>Every hook point (without "blocks.{l}.") some score reads: what the probe caches.</summary>
    public IReadOnlyCollection<string> Hooks => _scores.SelectMany(s => s.Hooks).Distinct().ToArray();

    /// <summary>
    /// The roles a head has, strongest first: every role-giving score whose value (valueOf(score name); NaN
    /// when the head has none) is at or above its threshold. Ties keep registry order. A role that refines
    /// another the head also has (HeadRole.Refines) moves just before it, so the label is the more specific one.
    /// </summary>
    public string[] Roles(Func<string, double> valueOf)
    {
        var roles = RoleScores.Select(s => (s.Role!, Value: valueOf(s.Name)))
            .Where(r => r.Value >= r.Item1.Threshold)
            .OrderByDescending(r => r.Value)
            .Select(r => r.Item1).ToList();
        for (int i = 0; i < roles.Count; i++)
        {
            int general = roles[i].Refines is { } g ? roles.FindIndex(r => r.Name == g) : -1;
            if (general >= 0 && general < i)
            {
                var specific = roles[i];
                roles.RemoveAt(i);
                roles.Insert(general, specific);
            }
        }
        return roles.Select(r => r.Name).ToArray();
    }

    /// <summary>
    /// The roles worth showing: <paramref name="roles"/> without those another of them refines (a current-token
    /// suppression head is a current-token head, so "current-token suppression" alone says both), in the same order.
    /// </summary>
    public string[] Specific(IReadOnlyList<string> roles) =>
        roles.Where(r => !roles.Any(o => ForRole(o)?.Role?.Refines == r)).ToArray();

    /// <summary>The head's label: its strongest role, or "".</summary>
    public string Label(Func<string, double> valueOf) => Roles(valueOf) is [var first, ..] ? first : "";
}
