using MiniGpt.Superposition;

namespace MiniGpt.Train.Report;

/// <summary>
/// The superposition verb's report on disk: the PNGs, superposition.json (every number) and superposition.html
/// (the plots embedded), each written whole or not at all (<see cref="AtomicFile"/>); superposition_*.png files
/// of an earlier run that this one did not draw are removed, so the folder never mixes two runs.
/// </summary>
public static class SuperpositionReport
{
    public sealed record Written(string Json, string JsonPath, string HtmlPath, int Plots);

    public static Written Write(SuperpositionResult r, string dir)
    {
        Directory.CreateDirectory(dir);
        var plots = SuperpositionPlots.Draw(r);
        var current = plots.Select(p => p.FileName).ToHashSet();
        foreach (string old in Directory.EnumerateFiles(dir, SuperpositionPlots.Prefix + "*.png"))
            if (SuperpositionPlots.IsPlotName(Path.GetFileName(old)) && !current.Contains(Path.GetFileName(old))) File.Delete(old);
        foreach (var p in plots) AtomicFile.Write(Path.Combine(dir, p.FileName), fs => fs.Write(p.Png));
        string json = CircuitsJson.ToJson(SuperpositionJson.Build(r, plots));
        string jsonPath = Path.Combine(dir, "superposition.json");
        AtomicFile.WriteAllText(jsonPath, json + "\n");
        string html = Path.Combine(dir, "superposition.html");
        AtomicFile.WriteAllText(html, SuperpositionHtml.Page(r, plots));
        return new Written(json, jsonPath, html, plots.Count);
    }
}
