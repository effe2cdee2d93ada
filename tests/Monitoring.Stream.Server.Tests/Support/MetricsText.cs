using System.Globalization;

namespace Monitoring.Stream.Server.Tests.Support;

/// <summary>Reads samples out of the Prometheus text exposition that <c>/metrics</c> serves.</summary>
internal static class MetricsText
{
    /// <summary>The value of the sample named exactly <paramref name="series"/> (name and labels as printed); fails the test when absent.</summary>
    public static double Value(string text, string series) =>
        TryValue(text, series) ?? throw new Xunit.Sdk.XunitException($"no sample {series} in /metrics");

    /// <summary>The value of the sample named exactly <paramref name="series"/>, or null.</summary>
    public static double? TryValue(string text, string series)
    {
        foreach (string line in text.Split('\n'))
        {
            if (line.StartsWith(series, StringComparison.Ordinal) && line.Length > series.Length && line[series.Length] == ' ')
            {
                return double.Parse(line.AsSpan(series.Length + 1), CultureInfo.InvariantCulture);
            }
        }

        return null;
    }

    /// <summary>The sum over every sample of the family <paramref name="name"/> (any labels).</summary>
    public static double Sum(string text, string name)
    {
        double sum = 0;
        foreach (string line in text.Split('\n'))
        {
            if (line.StartsWith(name, StringComparison.Ordinal) && line.Length > name.Length && (line[name.Length] == ' ' || line[name.Length] == '{'))
            {
                sum += double.Parse(line.AsSpan(line.LastIndexOf(' ') + 1), CultureInfo.InvariantCulture);
            }
        }

        return sum;
    }
}
