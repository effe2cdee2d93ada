using System.Globalization;
using System.Text.Json;

namespace Monitoring.Stream.Prometheus.Tests.Support;

/// <summary>Reads back what a receiver stored: VictoriaMetrics' export and Prometheus' query API.</summary>
internal static class ReceiverQueries
{
    /// <summary>Every raw sample of the series matching <paramref name="match"/>, from VictoriaMetrics' /api/v1/export.</summary>
    public static async Task<Dictionary<string, List<(long TimestampMs, double Value)>>> ExportAsync(DatabaseProcess vm, string match)
    {
        using (await DatabaseProcess.Http.GetAsync(new Uri(vm.BaseUri, "internal/force_flush")))
        {
        }

        string url = $"api/v1/export?match[]={Uri.EscapeDataString(match)}&start=0";
        string text = await DatabaseProcess.Http.GetStringAsync(new Uri(vm.BaseUri, url));
        var result = new Dictionary<string, List<(long, double)>>(StringComparer.Ordinal);
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            using var doc = JsonDocument.Parse(line);
            var labels = doc.RootElement.GetProperty("metric").EnumerateObject().Select(p => new KeyValuePair<string, string>(p.Name, p.Value.GetString()!)).ToList();
            double[] values = [.. doc.RootElement.GetProperty("values").EnumerateArray().Select(ParseValue)];
            long[] timestamps = [.. doc.RootElement.GetProperty("timestamps").EnumerateArray().Select(t => t.GetInt64())];
            result[ExpectedSeries.Key(labels)] = [.. timestamps.Zip(values)];
        }

        return result;
    }

    /// <summary>Every raw sample of the series matching <paramref name="selector"/> within the last <paramref name="range"/>, from a range-vector instant query.</summary>
    public static async Task<Dictionary<string, List<(long TimestampMs, double Value)>>> RangeQueryAsync(DatabaseProcess db, string selector, string range, long atMs)
    {
        string url = $"api/v1/query?nocache=1&query={Uri.EscapeDataString(selector + "[" + range + "]")}&time={(atMs / 1000.0).ToString("F3", CultureInfo.InvariantCulture)}";
        string text = await DatabaseProcess.Http.GetStringAsync(new Uri(db.BaseUri, url));
        using var doc = JsonDocument.Parse(text);
        var result = new Dictionary<string, List<(long, double)>>(StringComparer.Ordinal);
        foreach (JsonElement series in doc.RootElement.GetProperty("data").GetProperty("result").EnumerateArray())
        {
            var labels = series.GetProperty("metric").EnumerateObject().Select(p => new KeyValuePair<string, string>(p.Name, p.Value.GetString()!)).ToList();
            result[ExpectedSeries.Key(labels)] = [.. series.GetProperty("values").EnumerateArray()
                .Select(v => ((long)Math.Round(v[0].GetDouble() * 1000), ParseValue(v[1])))];
        }

        return result;
    }

    /// <summary>The single value of an instant query that returns one element.</summary>
    public static async Task<double?> ScalarQueryAsync(DatabaseProcess db, string query, long atMs)
    {
        string url = $"api/v1/query?nocache=1&query={Uri.EscapeDataString(query)}&time={(atMs / 1000.0).ToString("F3", CultureInfo.InvariantCulture)}";
        string text = await DatabaseProcess.Http.GetStringAsync(new Uri(db.BaseUri, url));
        using var doc = JsonDocument.Parse(text);
        JsonElement result = doc.RootElement.GetProperty("data").GetProperty("result");
        return result.GetArrayLength() == 0 ? null : ParseValue(result[0].GetProperty("value")[1]);
    }

    public static int SampleCount(Dictionary<string, List<(long, double)>> series) => series.Values.Sum(s => s.Count);

    private static double ParseValue(JsonElement element) => element.ValueKind == JsonValueKind.String
        ? element.GetString() switch
        {
            "NaN" => double.NaN,
            "+Inf" => double.PositiveInfinity,
            "-Inf" => double.NegativeInfinity,
            string s => double.Parse(s, CultureInfo.InvariantCulture),
            null => throw new FormatException("null sample value"),
        }
        : element.GetDouble();
}
