using MiniGpt.Data;
using MiniGpt.Patching;

namespace MiniGpt.Train.Report;

/// <summary>
/// The patch verb's report on disk: the PNGs, patch.json (every number) and patch.html (the plots embedded)
/// in one folder, each file written whole or not at all (<see cref="AtomicFile"/>), and plots of an earlier
/// run that this one did not draw removed, so the folder never mixes two runs' grids.
/// </summary>
public static class PatchReport
{
    public sealed record Written(string Json, string JsonPath, string HtmlPath, int Plots);

    public static Written Write(PatchingResult r, string checkpoint, TokenText text, string dir)
    {
        Directory.CreateDirectory(dir);
        var plots = PatchPlots.Draw(r, text);
        WritePlots(plots, dir);
        string json = CircuitsJson.ToJson(PatchJson.Build(r, checkpoint, text, plots));
        string jsonPath = Path.Combine(dir, "patch.json");
        AtomicFile.WriteAllText(jsonPath, json + "\n");
        string html = Path.Combine(dir, "patch.html");
        AtomicFile.WriteAllText(html, PatchHtml.Page(r, checkpoint, text, plots));
        return new Written(json, jsonPath, html, plots.Count);
    }

    /// <summary>Writes the plots and deletes the patch_*.png files of an earlier run that are not among them.</summary>
    public static void WritePlots(IReadOnlyList<PlotImage> plots, string dir)
    {
        var current = plots.Select(p => p.FileName).ToHashSet();
        foreach (string old in Directory.EnumerateFiles(dir, PatchPlots.Prefix + "*.png"))
            if (PatchPlots.IsPlotName(Path.GetFileName(old)) && !current.Contains(Path.GetFileName(old))) File.Delete(old);
        foreach (var p in plots) AtomicFile.Write(Path.Combine(dir, p.FileName), fs => fs.Write(p.Png));
    }
}
