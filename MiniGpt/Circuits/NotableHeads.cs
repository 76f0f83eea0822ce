namespace MiniGpt.Circuits;

/// <summary>
/// The heads a report of a wide model shows first: every head with a role, and the top few of every registered
/// score, so that a 144-head model (GPT-2 small) gets a table of a screen rather than 144 lines. A model with
/// few heads shows them all (<see cref="ShowsAll"/>).
/// </summary>
public static class NotableHeads
{
    /// <summary>Models with at most this many heads are shown, ablated and plotted head by head in full.</summary>
    public const int AllUpTo = 32;

    /// <summary>The top of each score a wide model's report keeps.</summary>
    public const int TopPerScore = 3;

    /// <summary>At most this many notable heads: roles first (strongest first), then the tops of the scores.</summary>
    public const int Max = 24;

    public static bool ShowsAll(int heads) => heads <= AllUpTo;

    /// <summary>
    /// The notable heads in layer, head order: those with a role (by their role score, strongest first), then
    /// each score's top <see cref="TopPerScore"/> in registry order (higher first, ties by position), extra
    /// (e.g. the largest ablation effects), at most <see cref="Max"/>.
    /// </summary>
    /// <param name="value">a head's value of a score by name; NaN for none.</param>
    /// <param name="roles">a head's roles, strongest first.</param>
    public static List<(int Layer, int Head)> Pick(int layers, int heads, HeadScoreSet set, Func<string, int, int, double> value,
        Func<int, int, string[]> roles, IEnumerable<(int Layer, int Head)>? extra = null)
    {
        var all = new List<(int L, int H)>();
        for (int l = 0; l < layers; l++)
            for (int h = 0; h < heads; h++) all.Add((l, h));
        var picked = new List<(int, int)>();
        void Add((int, int) x) { if (picked.Count < Max && !picked.Contains(x)) picked.Add(x); }
        foreach (var score in set.RoleScores)
            foreach (var x in all.Where(x => roles(x.L, x.H).Contains(score.Role!.Name)).OrderByDescending(x => value(score.Name, x.L, x.H)))
                Add(x);
        foreach (var score in set)
            foreach (var x in all.Where(x => double.IsFinite(value(score.Name, x.L, x.H))).OrderByDescending(x => value(score.Name, x.L, x.H)).Take(TopPerScore))
                Add(x);
        foreach (var x in extra ?? []) Add(x);
        picked.Sort();
        return picked;
    }

    /// <summary>The notable heads of a head-score run.</summary>
    public static List<(int Layer, int Head)> Of(HeadScores scores) =>
        Pick(scores.Layers, scores.Heads, scores.Set, scores.Value, scores.Roles);
}
