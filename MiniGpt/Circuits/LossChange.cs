namespace MiniGpt.Circuits;

/// <summary>
/// How a report words a loss ratio after/before: the verb follows the sign of the change ("raises … 1.59×",
/// "lowers … to 0.99×", "leaves … unchanged") and the factor keeps enough digits to differ from 1 when it does
/// (1.004×, not 1.0×).
/// </summary>
public static class LossChange
{
    /// <summary>
    /// The factor f as text with its ×: one decimal from 10 on (16.0×), else two (1.59×, 0.99×), else three when two
    /// would round a change to 1.00 (1.004×); exactly 1 is 1.00×.
    /// </summary>
    public static string Factor(double f)
    {
        if (!double.IsFinite(f)) return "–";
        if (f >= 10) return $"{f:0.0}×";
        if (f != 1 && Math.Round(f, 2) == 1) return $"{f:0.000}×";
        return $"{f:0.00}×";
    }

    /// <summary>"raises", "lowers" or "leaves" (unchanged), by the sign of after − before.</summary>
    public static string Verb(double before, double after) => after > before ? "raises" : after < before ? "lowers" : "leaves";

    /// <summary>
    /// "raises the repeated-half loss 1.59× (0.329 → 0.522 nats)", "lowers the repeated-half loss to 0.99× (6.571 →
    /// 6.506 nats)" or "leaves the repeated-half loss unchanged (0.329 nats)", for <paramref name="loss"/> = "the repeated-half loss".
    /// </summary>
    public static string Describe(string loss, double before, double after)
    {
        double f = after / before;
        return Verb(before, after) switch
        {
            "raises" => $"raises {loss} {Factor(f)} ({before:0.000} → {after:0.000} nats)",
            "lowers" => $"lowers {loss} to {Factor(f)} ({before:0.000} → {after:0.000} nats)",
            _ => $"leaves {loss} unchanged ({before:0.000} nats)",
        };
    }

    /// <summary>The size of an effect whatever its sign: |ln f| (a loss doubled and a loss halved weigh the same).</summary>
    public static double Size(double f) => double.IsFinite(f) && f > 0 ? Math.Abs(Math.Log(f)) : double.NegativeInfinity;
}
