using MiniGpt.Data;
using MiniGpt.Patching;

namespace MiniGpt.Train.Report;

/// <summary>The cells of a patching grid by name ("L1H2", "L0 pos 5 'x'", "L1H2 pos 17"), and the ones that matter most.</summary>
public static class PatchCells
{
    /// <summary>A cell's name: its layer, head and position, a position with the clean prompt's token there (pair 0; "pad" past its end).</summary>
    public static string Name(PatchGrid g, int cell, PatchPrompts p, TokenText text) => Name(g, g.Index(cell), p, text);

    /// <summary>The name of the cell at indices ix along the grid's axes.</summary>
    public static string Name(PatchGrid g, int[] ix, PatchPrompts p, TokenText text)
    {
        string Pos(int t) => $"pos {t} {Quoted(p, text, t)}";
        return g.Axes switch
        {
            ["layer", "pos"] => $"L{ix[0]} {Pos(ix[1])}",
            ["layer", "head"] => $"L{ix[0]}H{ix[1]}",
            _ => $"L{ix[0]}H{ix[1]} {Pos(ix[2])}",
        };
    }

    /// <summary>
    /// The label of position t: pair 0's clean token there, or "pad" where pair 0 is shorter than the batch and t is its
    /// padding (the padding token is an arbitrary one, e.g. the char tokenizer's '↵', that pair 0 does not hold).
    /// </summary>
    public static string PositionLabel(PatchPrompts p, TokenText text, int t) => p.IsPadding(0, t) ? "pad" : text.Show(p.Clean[t]);

    private static string Quoted(PatchPrompts p, TokenText text, int t) => p.IsPadding(0, t) ? "pad" : $"'{text.Show(p.Clean[t])}'";

    /// <summary>What a grid's 0 and 1 are: the run patched into and the run the patches come from.</summary>
    public static string Scale(PatchingResult r) => r.Noising ? "0 = clean run, 1 = corrupted run" : "0 = corrupted run, 1 = clean run";

    /// <summary>
    /// A warning when the clean and corrupted metrics barely differ: every normalised cell divides by that gap, so a
    /// gap under max(0.1, 5% of the larger |metric|) makes the grids noise (the model does not tell the pairs apart).
    /// </summary>
    public static string? GapWarning(PatchingResult r)
    {
        double gap = Math.Abs(r.Clean - r.Corrupted), floor = Math.Max(0.1, 0.05 * Math.Max(Math.Abs(r.Clean), Math.Abs(r.Corrupted)));
        if (double.IsFinite(gap) && gap >= floor) return null;
        return $"the clean and corrupted metrics differ by {gap.ToString("0.000", System.Globalization.CultureInfo.InvariantCulture)} " +
               "and every normalised cell divides by that: the model does not tell these pairs apart, so read the raw values or choose pairs whose answers it predicts differently";
    }

    /// <summary>The k cells of largest |value| (finite ones), largest first.</summary>
    public static List<(string Name, double Value)> Top(PatchGrid g, PatchPrompts p, TokenText text, int k) =>
        Enumerable.Range(0, g.Values.Length).Where(i => double.IsFinite(g.Values[i]))
            .OrderByDescending(i => Math.Abs(g.Values[i])).Take(k)
            .Select(i => (Name(g, i, p, text), g.Values[i])).ToList();

    /// <summary>The k senders of a path with the largest |effect|: heads of its grid, the embeddings ("embed") and MLPs ("mlp0").</summary>
    public static List<(string Name, double Value)> TopSenders(PathPatchResult x, PatchPrompts p, TokenText text, int k) =>
        Top(x.Grid, p, text, k).Concat(x.Others.Where(o => double.IsFinite(o.Value)).Select(o => (o.Sender.ToString(), o.Value)))
            .OrderByDescending(t => Math.Abs(t.Item2)).Take(k).ToList();
}
