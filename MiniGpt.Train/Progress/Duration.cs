using System.Globalization;

namespace MiniGpt.Train.Progress;

/// <summary>A duration as progress lines show it: m:ss under an hour, h:mm:ss from one hour on (TimeSpan's "m:ss" drops the hours).</summary>
public static class Duration
{
    public static string Short(TimeSpan t)
    {
        if (t < TimeSpan.Zero) t = TimeSpan.Zero;
        long s = (long)t.TotalSeconds;
        return s >= 3600
            ? string.Create(CultureInfo.InvariantCulture, $"{s / 3600}:{s / 60 % 60:00}:{s % 60:00}")
            : string.Create(CultureInfo.InvariantCulture, $"{s / 60}:{s % 60:00}");
    }
}
