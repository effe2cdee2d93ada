using System.Globalization;

namespace Monitoring.Stream.Prometheus.Tests.Support;

/// <summary>
/// What a receiver must hold after the sink sent the engine's rows, derived here from the naming rules of
/// docs/time-series-sink.md with plain strings (not with the sink's code): series key to samples in time order.
/// </summary>
internal static class ExpectedSeries
{
    public static Dictionary<string, List<(long TimestampMs, double Value)>> From(IEnumerable<CollectedRow> rows, string? instance = null)
    {
        var result = new Dictionary<string, List<(long, double)>>(StringComparer.Ordinal);
        var totals = new Dictionary<string, (long Count, double Sum)>(StringComparer.Ordinal);
        foreach (CollectedRow row in rows.OrderBy(r => r.WindowEndMs))
        {
            string family = row.Metric.EndsWith("_total", StringComparison.Ordinal) && row.Metric.Length > 6 ? row.Metric[..^6] : row.Metric;
            var labels = row.Labels
                .Select(l => new KeyValuePair<string, string>(l.Key is "instance" or "quantile" ? "exported_" + l.Key : l.Key, l.Value))
                .Append(new("instance", instance ?? row.Instance))
                .ToList();
            string seriesId = row.Metric + "|" + string.Join(",", row.Labels.Select(l => l.Key + "=" + l.Value));
            (long count, double sum) = totals.GetValueOrDefault(seriesId);
            count += row.Count;
            sum += row.Sum;
            totals[seriesId] = (count, sum);

            void Add(string name, double value, string? quantile = null)
            {
                var all = new List<KeyValuePair<string, string>>(labels) { new("__name__", name) };
                if (quantile is not null)
                {
                    all.Add(new("quantile", quantile));
                }

                string key = Key(all);
                if (!result.TryGetValue(key, out List<(long, double)>? samples))
                {
                    result[key] = samples = [];
                }

                samples.Add((row.WindowEndMs, value));
            }

            Add(family + "_count", count);
            Add(family + "_sum", sum);
            string[] q = ["0.5", "0.9", "0.95", "0.99"];
            for (int i = 0; i < 4; i++)
            {
                if (row.Quantiles[i] is double v)
                {
                    Add(family, v, q[i]);
                }
            }

            Add(family + "_min", row.Min);
            Add(family + "_max", row.Max);
            Add(family + "_mean", row.Mean);
            Add(family + "_stddev", row.StdDev);
            Add(family + "_last", row.Last);
        }

        return result;
    }

    /// <summary>A canonical key of a label set, whatever order the labels come in.</summary>
    public static string Key(IEnumerable<KeyValuePair<string, string>> labels)
    {
        var list = labels.ToList();
        string name = list.First(l => l.Key == "__name__").Value;
        return name + "{" + string.Join(",", list.Where(l => l.Key != "__name__").OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{l.Key}=\"{l.Value}\"")) + "}";
    }

    public static string Format(double value) => value.ToString("R", CultureInfo.InvariantCulture);
}
