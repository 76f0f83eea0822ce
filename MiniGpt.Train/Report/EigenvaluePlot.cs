using System.Numerics;
using ScottPlot;

namespace MiniGpt.Train.Report;

/// <summary>
/// The eigenvalues of one head's OV circuit W_E·W_V·W_O·W_U and token QK circuit W_E·W_Q·W_Kᵀ·W_Eᵀ in the
/// complex plane, each set divided by its largest modulus so both fit the unit disc (the scale of a
/// circuit says nothing about whether it copies; the angles do). Elhage et al. 2021 read these plots:
/// eigenvalues on the positive real axis mean the circuit maps a token to itself (OV: the head copies
/// the attended token to the output; QK: a token attends to itself), on the negative axis the opposite.
/// The title gives each set's eigenvalue score Re(Σλ)/Σ|λ| (FactoredMatrix.EigenvalueScore).
/// </summary>
public static class EigenvaluePlot
{
    public static byte[] Render(string head, Complex[] ov, double ovScore, Complex[] qk, double qkScore)
    {
        using var plot = new Plot();
        var circle = plot.Add.Circle(0, 0, 1);
        circle.LineColor = Colors.Gray;
        circle.LinePattern = LinePattern.Dotted;
        circle.FillColor = Colors.Transparent;
        plot.Add.HorizontalLine(0, 1, Colors.LightGray);
        plot.Add.VerticalLine(0, 1, Colors.LightGray);
        Add(plot, qk, Colors.DarkOrange, MarkerShape.OpenTriangleUp);
        Add(plot, ov, Colors.SteelBlue, MarkerShape.FilledCircle);
        // the markers are named in the title instead of a legend, which would cover the disc's lower left
        plot.Title($"{head}: OV ● {Fmt(ovScore)}, QK △ {Fmt(qkScore)}", 13);
        plot.Axes.Bottom.Label.Text = "Re λ / max|λ|";
        plot.Axes.Left.Label.Text = "Im λ / max|λ|";
        plot.Axes.SetLimits(-1.15, 1.15, -1.15, 1.15);
        plot.Axes.SquareUnits();
        return PlotImage.Render(plot, 310, 310);
    }

    private static string Fmt(double s) => double.IsFinite(s) ? s.ToString("+0.00;-0.00") : "n/a";

    private static void Add(Plot plot, Complex[] eig, Color color, MarkerShape shape)
    {
        double max = eig.Length == 0 ? 0 : eig.Max(e => e.Magnitude);
        if (max == 0) return;
        var xs = eig.Select(e => e.Real / max).ToArray();
        var ys = eig.Select(e => e.Imaginary / max).ToArray();
        plot.Add.Markers(xs, ys, shape, 7, color);
    }
}
