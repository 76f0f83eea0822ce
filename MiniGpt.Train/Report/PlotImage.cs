using ScottPlot;

namespace MiniGpt.Train.Report;

/// <summary>A rendered plot: its file name in the report folder, a title and caption for the report, and the PNG bytes.</summary>
public sealed record PlotImage(string FileName, string Title, string Caption, byte[] Png)
{
    /// <summary>The 8 bytes every PNG starts with (PNG spec, section 5.2).</summary>
    public static ReadOnlySpan<byte> Signature => [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>Renders a finished plot as PNG in a sans-serif face.</summary>
    public static byte[] Render(Plot plot, int width, int height)
    {
        plot.Font.Set(SansFont.Value);
        return plot.GetImageBytes(width, height, ImageFormat.Png);
    }

    // ScottPlot's Fonts.Sans resolves to "DejaVu Serif" on Debian (its fallback order), so ask for the usual
    // sans faces by name; GetTypeface falls back to some other family when the one asked for is missing.
    // DejaVu Sans also has the glyphs the token labels use (␣ ↵ ⇥).
    private static readonly Lazy<string> SansFont = new(() =>
        new[] { "DejaVu Sans", "Liberation Sans", "Arial", "Helvetica", "Noto Sans" }
            .FirstOrDefault(n => Fonts.GetTypeface(n, false, false)?.FamilyName == n) ?? Fonts.Sans);

    /// <summary>Integer tick positions with labels, at most maxTicks of them (every k-th) so they do not overlap.</summary>
    public static (double[] Positions, string[] Labels) Ticks(IReadOnlyList<string> labels, int maxTicks, Func<int, double>? position = null)
    {
        int step = Math.Max(1, (labels.Count + maxTicks - 1) / maxTicks);
        var pos = new List<double>();
        var lab = new List<string>();
        for (int i = 0; i < labels.Count; i += step) { pos.Add(position?.Invoke(i) ?? i); lab.Add(labels[i]); }
        return (pos.ToArray(), lab.ToArray());
    }
}
