namespace MiniGpt.Circuits;

/// <summary>One head's line of the report: its detected roles, behavioural scores (by score name), circuit spectra and ablation.</summary>
public sealed record HeadReport(int Layer, int Head, string[] Roles, IReadOnlyDictionary<string, double> Scores,
    IReadOnlyList<CircuitSpectrum> Spectra, HeadAblationResult Ablation)
{
    public string Name => $"L{Layer}H{Head}";
    /// <summary>The head's value of a score, NaN when the run did not compute it.</summary>
    public double Score(string name) => Scores.TryGetValue(name, out var v) ? v : double.NaN;
    public CircuitSpectrum Spectrum(string name) => Spectra.First(s => s.Name == name);
    /// <summary>Eigenvalue copying score of the OV circuit W_E·W_V·W_O·W_U (Elhage et al. 2021).</summary>
    public double OvCopying => Spectrum("ov").EigenvalueScore;
    /// <summary>Eigenvalue score of the token QK circuit W_E·W_Q·W_Kᵀ·W_Eᵀ (positive: tokens attend to themselves).</summary>
    public double QkEigenScore => Spectrum("token_qk").EigenvalueScore;
}
