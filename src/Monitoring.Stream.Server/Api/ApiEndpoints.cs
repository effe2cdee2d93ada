using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Primitives;
using Monitoring.Stream.Hosting.Dashboard;
using Monitoring.Stream.Hosting.Health;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Prometheus;
using Monitoring.Stream.Server.Service;
using Monitoring.Stream.Store;

namespace Monitoring.Stream.Server.Api;

/// <summary>The HTTP API of <c>monitoring-stream run</c> (docs/http-api.md).</summary>
internal static class ApiEndpoints
{
    /// <summary>The largest number of label filters and group-by labels of one query.</summary>
    public const int MaxQueryLabels = 32;

    /// <summary>
    /// Most steps the window of a statistics query with <c>step</c> may hold; the buckets, aligned to multiples of the
    /// step, are one more when the window does not start on one.
    /// </summary>
    public const int MaxBuckets = 500;

    /// <summary>Maps every endpoint.</summary>
    public static void Map(IEndpointRouteBuilder app)
    {
        app.MapPost("/api/v1/points", (HttpContext context, IngestService ingest) => ingest.HandleAsync(context))
            .WithName("IngestPoints")
            .WithSummary("Ingest a batch of points: body application/x-msgpack (docs/wire-format.md) or application/json (docs/http-api.md); Content-Encoding gzip allowed.")
            .Produces<IngestResponse>()
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status401Unauthorized)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status415UnsupportedMediaType)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);

        app.MapGet("/api/v1/statistics", Statistics)
            .WithName("GetStatistics")
            .WithSummary("Statistics of a metric over a window: ?metric=&window=1h&label.<name>=<value>&groupBy=a,b")
            .Produces<StatisticsResponse>()
            .ProducesProblem(StatusCodes.Status400BadRequest);

        app.MapGet("/api/v1/metrics", (HttpContext context, MetricCatalog catalog) =>
        {
            string? search = context.Request.Query["search"];
            var metrics = catalog.List(search).Select(m => new MetricInfo(m.Name, m.Labels, DateTimeOffset.FromUnixTimeMilliseconds(m.LastWindowEndUnixMs))).ToList();
            return Results.Json(new MetricsListResponse(metrics, catalog.Omitted));
        })
            .WithName("ListMetrics")
            .WithSummary("Metric names (and their label names) seen in emitted windows; ?search= filters by substring.")
            .Produces<MetricsListResponse>();

        app.MapGet("/api/v1/dashboard", async (HttpContext context, DashboardDataService dashboard) =>
        {
            TimeSpan window = DashboardDataService.DefaultWindow;
            string? text = context.Request.Query["window"];
            if (text is not null && !WindowParser.TryParse(text, out window))
            {
                return BadQuery("window", $"'{text}' is not a span such as 30s, 15m, 1h or 7d.");
            }

            DashboardData data = await dashboard.GetAsync(window, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(data, DashboardJsonContext.Default.DashboardData);
        })
            .WithName("GetDashboard")
            .WithSummary("Everything the live page shows for one window (?window=1h): health, host, requests, documents, engine.")
            .Produces<DashboardData>()
            .ProducesProblem(StatusCodes.Status400BadRequest);

        app.MapGet("/metrics", async (HttpContext context, MetricsPipeline pipeline, ServerMetrics server, HealthCheckService health, IEnumerable<RemoteWriteSink> remoteWrite) =>
        {
            HealthReport report = await health.CheckHealthAsync(context.RequestAborted).ConfigureAwait(false);
            var text = new StringWriter(new StringBuilder(16 * 1024)) { NewLine = "\n" };
            PrometheusTextWriter.Write(text, pipeline.GetMetrics());
            List<RemoteWriteSink> sinks = [.. remoteWrite];
            if (sinks.Count > 0)
            {
                PrometheusTextWriter.Write(text, sinks);
            }

            server.WriteTo(text);
            if (context.RequestServices.GetService<ArrowFileStore>() is ArrowFileStore store)
            {
                StoreReport.WriteTo(text, store);
            }

            PrometheusText.Family(text, "monitoring_stream_health_status", "gauge", "Health: 2 healthy, 1 degraded, 0 unhealthy; check=\"overall\" for the whole.");
            PrometheusText.Sample(text, "monitoring_stream_health_status", [("check", HealthMetricsPublisher.OverallCheck)], (int)report.Status);
            foreach ((string name, HealthReportEntry entry) in report.Entries.OrderBy(e => e.Key, StringComparer.Ordinal))
            {
                PrometheusText.Sample(text, "monitoring_stream_health_status", [("check", name)], (int)entry.Status);
            }

            return Results.Text(text.ToString(), PrometheusTextWriter.ContentType);
        })
            .WithName("GetSelfMetrics")
            .WithSummary("The engine's self-metrics and health in the Prometheus text exposition format 0.0.4.")
            .Produces<string>(StatusCodes.Status200OK, "text/plain");
    }

    private static IResult Statistics(HttpContext context, MetricStatisticsService queries, TimeProvider time)
    {
        IQueryCollection query = context.Request.Query;
        string? metric = query["metric"];
        if (string.IsNullOrWhiteSpace(metric))
        {
            return BadQuery("metric", "is required.");
        }

        if (query["metric"].Count > 1)
        {
            // Repeated, the values would read as one name joined by commas, which no metric has.
            return BadQuery("metric", "takes one metric name.");
        }

        TimeSpan window = TimeSpan.FromHours(1);
        string? windowText = query["window"];
        if (windowText is not null && !WindowParser.TryParse(windowText, out window))
        {
            return BadQuery("window", $"'{windowText}' is not a span such as 30s, 15m, 1h or 7d.");
        }

        var filter = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach ((string key, StringValues values) in query)
        {
            if (key.StartsWith("label.", StringComparison.Ordinal))
            {
                string name = key["label.".Length..];
                if (name.Length == 0)
                {
                    return BadQuery(key, "names no label: use label.<name>=<value>.");
                }

                if (values.Count != 1)
                {
                    return BadQuery(key, "takes one value per label name.");
                }

                filter[name] = values[0] ?? string.Empty;
            }
        }

        List<string> groupBy = [.. query["groupBy"].SelectMany(v => (v ?? string.Empty).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).Distinct(StringComparer.Ordinal)];
        if (filter.Count > MaxQueryLabels)
        {
            return BadQuery("label.<name>", $"at most {MaxQueryLabels} label filters ({filter.Count} given).");
        }

        if (groupBy.Count > MaxQueryLabels)
        {
            return BadQuery("groupBy", $"at most {MaxQueryLabels} group-by labels ({groupBy.Count} given).");
        }

        TimeSpan? step = null;
        string? stepText = query["step"];
        if (stepText is not null)
        {
            if (!WindowParser.TryParse(stepText, out TimeSpan parsed) || parsed < TimeSpan.FromMilliseconds(1))
            {
                return BadQuery("step", $"'{stepText}' is not a span such as 10s, 1m or 30m.");
            }

            if (groupBy.Count > 0)
            {
                return BadQuery("step", "cannot be combined with groupBy.");
            }

            if (window / parsed > MaxBuckets)
            {
                return BadQuery("step", $"cuts the window into more than {MaxBuckets} steps.");
            }

            step = parsed;
        }

        DateTimeOffset to = time.GetUtcNow();
        try
        {
            StatisticsResponse answer = Query(queries, metric, filter, groupBy, to - window, to);
            return Results.Json(step is TimeSpan s ? answer with { Series = Buckets(queries, metric, filter, to - window, to, s) } : answer);
        }
        catch (ArgumentException)
        {
            return BadQuery("label.<name>", "names a label that is not valid (Prometheus data model).");
        }
    }

    /// <summary>Runs a statistics query (the HTTP endpoint and <c>query --data-dir</c> share it).</summary>
    /// <exception cref="ArgumentException">A label of the filter is not valid.</exception>
    public static StatisticsResponse Query(MetricStatisticsService queries, string metric, IReadOnlyDictionary<string, string> filter, IReadOnlyList<string> groupBy, DateTimeOffset from, DateTimeOffset to)
    {
        LabelSet labels = LabelSet.Create([.. filter.OrderBy(f => f.Key, StringComparer.Ordinal).Select(f => new Label(f.Key, f.Value))]);
        StatisticsData? statistics = null;
        List<GroupData> groups = [];
        if (groupBy.Count == 0)
        {
            MetricStatistics? s = queries.GetMatching(metric, labels, from, to);
            statistics = s is null ? null : StatisticsData.From(s);
        }
        else
        {
            foreach (GroupedStatistics g in queries.GetGrouped(metric, labels, groupBy, from, to))
            {
                var key = new SortedDictionary<string, string>(StringComparer.Ordinal);
                foreach (Label l in g.Group.AsSpan())
                {
                    key[l.Name] = l.Value;
                }

                groups.Add(new GroupData(key, StatisticsData.From(g.Statistics)));
            }
        }

        return new StatisticsResponse(metric, from, to, (to - from).TotalSeconds, filter, groupBy, statistics, groups);
    }

    /// <summary>
    /// The span cut into buckets of <paramref name="step"/>, aligned to multiples of it since the epoch (so
    /// refreshes give the same buckets); each bucket merges the windows that overlap it. With a step that is a
    /// multiple of the window size every window falls in exactly one bucket.
    /// </summary>
    internal static List<BucketData> Buckets(MetricStatisticsService queries, string metric, IReadOnlyDictionary<string, string> filter, DateTimeOffset from, DateTimeOffset to, TimeSpan step)
    {
        LabelSet labels = LabelSet.Create([.. filter.OrderBy(f => f.Key, StringComparer.Ordinal).Select(f => new Label(f.Key, f.Value))]);
        long stepMs = (long)step.TotalMilliseconds;
        long fromMs = from.ToUnixTimeMilliseconds();
        long start = fromMs - (((fromMs % stepMs) + stepMs) % stepMs);
        long toMs = to.ToUnixTimeMilliseconds();
        var buckets = new List<BucketData>();
        for (long b = start; b < toMs; b += stepMs)
        {
            DateTimeOffset bFrom = DateTimeOffset.FromUnixTimeMilliseconds(b);
            DateTimeOffset bTo = DateTimeOffset.FromUnixTimeMilliseconds(b + stepMs);
            MetricStatistics? s = queries.GetMatching(metric, labels, bFrom, bTo);
            buckets.Add(new BucketData(bFrom, bTo, s is null ? null : StatisticsData.From(s)));
        }

        return buckets;
    }

    /// <summary>A 400 naming the query parameter.</summary>
    internal static IResult BadQuery(string parameter, string problem) =>
        Results.Problem(detail: $"Query parameter '{parameter}' {problem}", statusCode: StatusCodes.Status400BadRequest, title: "Bad query");
}
