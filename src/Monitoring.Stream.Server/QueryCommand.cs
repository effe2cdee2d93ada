using System.CommandLine;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text.Json;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Server.Api;

namespace Monitoring.Stream.Server;

/// <summary>
/// <c>monitoring-stream query</c>: statistics of a metric from a running service (<c>GET /api/v1/statistics</c>)
/// or straight from a store folder (the Arrow files, no service needed), printed as a table or as JSON.
/// </summary>
internal static class QueryCommand
{
    private static readonly JsonSerializerOptions s_json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    /// <summary>The <c>query</c> command.</summary>
    public static Command Create()
    {
        var metric = new Option<string>("--metric") { Description = "the metric", Required = true };
        var window = new Option<string>("--window") { Description = "span back from now: 30s, 15m, 1h, 7d", DefaultValueFactory = _ => "1h" };
        var labels = new Option<string[]>("--label") { Description = "filter name=value (repeat for more)", AllowMultipleArgumentsPerToken = false };
        var groupBy = new Option<string>("--group-by") { Description = "label names to group by, comma-separated" };
        var url = new Option<string>("--url") { Description = "a running service [default: http://127.0.0.1:9400]" };
        var dataDir = new Option<string>("--data-dir") { Description = "read a store folder instead of asking a service (<data-dir>/windows, or the folder itself if it holds .arrow files)" };
        var token = new Option<string>("--api-token") { Description = "bearer token of the service" };
        var json = new Option<bool>("--json") { Description = "print the answer as JSON (the shape of GET /api/v1/statistics)" };
        var command = new Command("query", "print statistics of a metric from a running service or a store folder")
        {
            metric, window, labels, groupBy, url, dataDir, token, json,
        };
        command.SetAction(async (parse, ct) =>
        {
            if (!WindowParser.TryParse(parse.GetValue(window), out TimeSpan span))
            {
                return Fail($"--window: '{parse.GetValue(window)}' is not a span such as 30s, 15m, 1h or 7d");
            }

            var filter = new SortedDictionary<string, string>(StringComparer.Ordinal);
            foreach (string pair in parse.GetValue(labels) ?? [])
            {
                int eq = pair.IndexOf('=', StringComparison.Ordinal);
                if (eq <= 0)
                {
                    return Fail($"--label: '{pair}' is not name=value");
                }

                filter[pair[..eq]] = pair[(eq + 1)..];
            }

            List<string> groups = [.. (parse.GetValue(groupBy) ?? string.Empty).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)];
            string? dir = parse.GetValue(dataDir);
            if (dir is not null && parse.GetValue(url) is not null)
            {
                return Fail("--url and --data-dir: give one");
            }

            StatisticsResponse? answer;
            if (dir is not null)
            {
                string store = Directory.Exists(dir) && Directory.EnumerateFiles(dir, "*.arrow").Any() ? dir : Path.Combine(dir, "windows");
                if (!Directory.Exists(store))
                {
                    return Fail($"--data-dir: no store at '{Path.GetFullPath(store)}'");
                }

                var queries = new MetricStatisticsService(new RecentWindowIndex(), store);
                DateTimeOffset to = DateTimeOffset.UtcNow;
                try
                {
                    answer = ApiEndpoints.Query(queries, parse.GetValue(metric)!, filter, groups, to - span, to);
                }
                catch (ArgumentException e)
                {
                    return Fail("--label: " + e.Message);
                }
            }
            else
            {
                string baseUrl = (parse.GetValue(url) ?? "http://127.0.0.1:9400").TrimEnd('/');
                string query = $"metric={Uri.EscapeDataString(parse.GetValue(metric)!)}&window={Uri.EscapeDataString(parse.GetValue(window)!)}" +
                    string.Concat(filter.Select(f => $"&label.{Uri.EscapeDataString(f.Key)}={Uri.EscapeDataString(f.Value)}")) +
                    (groups.Count == 0 ? string.Empty : "&groupBy=" + Uri.EscapeDataString(string.Join(',', groups)));
                using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
                if (parse.GetValue(token) is string t)
                {
                    client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", t);
                }

                try
                {
                    using HttpResponseMessage response = await client.GetAsync(new Uri(baseUrl + "/api/v1/statistics?" + query), ct).ConfigureAwait(false);
                    string body = await response.Content.ReadAsStringAsync(ct).ConfigureAwait(false);
                    if (!response.IsSuccessStatusCode)
                    {
                        return Fail($"{baseUrl}: {(int)response.StatusCode} {body}");
                    }

                    answer = JsonSerializer.Deserialize<StatisticsResponse>(body, s_json);
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException or UriFormatException)
                {
                    return Fail($"{baseUrl}: {e.Message}");
                }
            }

            if (parse.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(answer, s_json));
            }
            else
            {
                PrintTable(answer!);
            }

            return 0;
        });
        return command;
    }

    private static void PrintTable(StatisticsResponse answer)
    {
        Console.WriteLine($"{answer.Metric} over {answer.From:yyyy-MM-dd HH:mm:ss} .. {answer.To:HH:mm:ss} UTC" +
            (answer.Labels.Count == 0 ? string.Empty : " where " + string.Join(", ", answer.Labels.Select(l => $"{l.Key}={l.Value}"))));
        List<(string Group, StatisticsData Stats)> rows = answer.GroupBy.Count == 0
            ? answer.Statistics is null ? [] : [("(all)", answer.Statistics)]
            : [.. answer.Groups.Select(g => (string.Join(",", g.Labels.Select(l => $"{l.Key}={l.Value}")), g.Statistics))];
        if (rows.Count == 0)
        {
            Console.WriteLine("  no closed window of a matching series in this span");
            return;
        }

        int width = Math.Max(10, rows.Max(r => r.Group.Length));
        Console.WriteLine($"  {"group".PadRight(width)} {"count",10} {"mean",11} {"stddev",11} {"min",11} {"p50",11} {"p90",11} {"p99",11} {"max",11} {"series",6}");
        foreach ((string group, StatisticsData s) in rows)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {group.PadRight(width)} {s.Count,10} {F(s.Mean),11} {F(s.SampleStdDev),11} {F(s.Min),11} {F(s.P50),11} {F(s.P90),11} {F(s.P99),11} {F(s.Max),11} {s.Series,6}"));
        }

        static string F(double? v) => v is double d ? d.ToString("G6", CultureInfo.InvariantCulture) : "-";
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine("monitoring-stream query: " + message);
        return 2;
    }
}
