using System.Globalization;

namespace MiniGpt.Train.Report;

/// <summary>
/// How report.html words an ablation's effect on a loss: the verb follows the sign of ablated − clean, and the
/// factor ablated/clean has enough digits to tell 0.990 from 1.000 ("raises … 1.0×" hid a loss that fell).
/// </summary>
public static class AblationEffect
{
    /// <summary>"5.30×" for factors far from 1, "0.990×" / "1.004×" near it: three significant digits of the change.</summary>
    public static string Factor(double ablated, double clean)
    {
        double f = ablated / clean;
        if (!double.IsFinite(f)) return "–";
        string fmt = Math.Abs(f - 1) < 0.1 ? "0.000" : "0.00";
        return f.ToString(fmt, CultureInfo.InvariantCulture) + "×";
    }

    /// <summary>ablated − clean in nats with its sign: "+1.234", "−0.065".</summary>
    public static string Delta(double ablated, double clean)
    {
        double d = ablated - clean;
        return double.IsFinite(d) ? d.ToString("+0.000;−0.000;0.000", CultureInfo.InvariantCulture) : "–";
    }

    /// <summary>"raises the repeated-half loss 5.30× (0.181 → 0.959 nats, +0.778)"; "lowers …" when it fell; "leaves … unchanged" at equality.</summary>
    public static string Sentence(string loss, double ablated, double clean)
    {
        string verb = ablated > clean ? "raises" : ablated < clean ? "lowers" : "leaves";
        string f = ablated == clean ? "unchanged" : Factor(ablated, clean);
        return string.Create(CultureInfo.InvariantCulture, $"{verb} the {loss} {f} ({clean:0.000} → {ablated:0.000} nats, {Delta(ablated, clean)})");
    }
}
