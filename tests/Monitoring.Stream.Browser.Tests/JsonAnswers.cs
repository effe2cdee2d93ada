using System.Globalization;
using System.Text.Json;

namespace Monitoring.Stream.Browser.Tests;

/// <summary>Reads the figures the tests compare out of the service's JSON answers.</summary>
internal static class JsonAnswers
{
    /// <summary>The dashboard's overall health status, or "Unknown" without a health section.</summary>
    public static string HealthStatus(JsonElement dashboard) =>
        dashboard.TryGetProperty("health", out JsonElement h) && h.ValueKind == JsonValueKind.Object ? h.GetProperty("status").GetString()! : "Unknown";

    /// <summary>Each sink's name and state, in the answer's order.</summary>
    public static string[] SinkStates(JsonElement dashboard) =>
        [.. dashboard.GetProperty("engine").GetProperty("sinks").EnumerateArray().Select(s => $"{s.GetProperty("name").GetString()}={s.GetProperty("state").GetString()}")];

    /// <summary>
    /// The p99 the quantile chart ends on: the last bucket that has one when the answer has buckets over
    /// time (<c>series</c>), otherwise the whole span's; null when there is none.
    /// </summary>
    public static double? LatestP99(JsonElement statistics)
    {
        if (statistics.TryGetProperty("series", out JsonElement series) && series.ValueKind == JsonValueKind.Array)
        {
            double? last = null;
            foreach (JsonElement bucket in series.EnumerateArray())
            {
                if (P99(bucket.GetProperty("statistics")) is double v)
                {
                    last = v;
                }
            }

            return last;
        }

        return statistics.TryGetProperty("statistics", out JsonElement s) ? P99(s) : null;
    }

    /// <summary>Parses a number the page wrote with JavaScript's <c>String(number)</c> (shortest round-trip form, as System.Text.Json writes).</summary>
    public static double? PageNumber(string? text) =>
        string.IsNullOrEmpty(text) ? null : double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);

    private static double? P99(JsonElement s) =>
        s.ValueKind == JsonValueKind.Object && s.TryGetProperty("p99", out JsonElement p) && p.ValueKind == JsonValueKind.Number ? p.GetDouble() : null;
}
