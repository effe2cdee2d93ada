using System.Diagnostics.Metrics;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Monitoring.Stream.Hosting.Dashboard;
using Monitoring.Stream.Hosting.DependencyInjection;
using Monitoring.Stream.Hosting.Http;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Tests.Docs;

/// <summary>The code of docs/sdk.md: each region between snippet markers is quoted there verbatim (SdkDocTests checks it) and run by the tests.</summary>
internal static class SdkSnippets
{
    public static WebApplication QuickStart(string[] args)
    {
        // <snippet:quickstart>
        WebApplicationBuilder builder = WebApplication.CreateBuilder(args);
        builder.Services.AddMonitoringStream(o =>
        {
            o.ArrowStore.Directory = "data/windows";        // older windows, for queries up to its retention
            o.Bridge.Meters.Add("Microsoft.AspNetCore.Hosting");
            o.Bridge.Meters.Add("MyCompany.*");               // the app's own Meters, unchanged
        });
        builder.Services.AddHealthChecks().AddCheck("database", () => HealthCheckResult.Healthy());

        WebApplication app = builder.Build();
        app.UseMonitoringStreamHttpMetrics();                 // request duration, count and status per route template
        app.MapMonitoringStreamDashboard("/monitoring/dashboard");
        app.MapGet("/orders/{id}", (string id) => Results.Ok(id));
        // </snippet:quickstart>
        return app;
    }

    public static void Instruments(MetricsCollector collector)
    {
        // <snippet:instruments>
        MetricCounter orders = collector.CreateCounter("orders_total", ["region", "channel"]);
        MetricGauge queue = collector.CreateGauge("queue_depth", ["queue"]);
        MetricHistogram latency = collector.CreateHistogram("checkout_duration_seconds", ["method", "route", "status"], unit: "s");

        orders.Add(1, "eu", "web");                           // labels per call: resolved on each call
        queue.Set(42, "payments");
        latency.Record(0.042, "GET", "/cart", "200");

        BoundHistogram cart = latency.Bind("GET", "/cart", "200");   // resolved once: a hot loop writes by id
        cart.Record(0.038);

        RejectReason refused = orders.Add(-1, "eu", "web");   // NegativeCounterIncrement, counted, never thrown
        RejectReason wrongCount = latency.Record(0.1, "GET");  // LabelCountMismatch, counted, never thrown
        // </snippet:instruments>
        _ = refused;
        _ = wrongCount;
    }

    public static void Queries(MetricStatisticsService queries)
    {
        // <snippet:queries>
        // One series, exactly this label set, over the last 15 minutes.
        MetricStatistics? cart = queries.GetStatistics("checkout_duration_seconds",
            LabelSet.Create(new("method", "GET"), new("route", "/cart"), new("status", "200")), TimeSpan.FromMinutes(15));

        // Every series whose labels include route="/cart", merged into one answer, over the last hour.
        MetricStatistics? anyStatus = queries.GetMatching("checkout_duration_seconds",
            LabelSet.Create(new Label("route", "/cart")), TimeSpan.FromHours(1));

        // One answer per status, over an explicit span.
        DateTimeOffset to = DateTimeOffset.UtcNow;
        IReadOnlyList<GroupedStatistics> byStatus = queries.GetGrouped("checkout_duration_seconds",
            LabelSet.Empty, ["status"], to.AddHours(-6), to);

        if (anyStatus is not null)
        {
            Console.WriteLine($"n={anyStatus.Count} mean={anyStatus.Mean} median={anyStatus.Median} p99={anyStatus.P99} " +
                $"p99.9={anyStatus.Quantile(0.999)} sd(pop)={anyStatus.PopulationStdDev} sd(sample)={anyStatus.SampleStdDev}");
        }
        // </snippet:queries>
        _ = (cart, byStatus);
    }

    public static void Bridge(Meter meter)
    {
        // <snippet:bridge>
        // Unchanged application code: a Meter the bridge selects by name ("MyCompany.*").
        Counter<long> placed = meter.CreateCounter<long>("shop.orders.placed");
        Histogram<double> duration = meter.CreateHistogram<double>("shop.checkout.duration", unit: "s");
        meter.CreateObservableGauge("shop.cart.open", () => 17);

        placed.Add(1, new KeyValuePair<string, object?>("region", "eu"));       // engine metric shop_orders_placed{region="eu"}
        duration.Record(0.25, new KeyValuePair<string, object?>("payment", "card"));
        // </snippet:bridge>
    }

    public static async Task<int> Documents(DocumentMetrics documents, byte[] pdf)
    {
        // <snippet:documents>
        int pages = await documents.MeasureAsync("invoice", pdf.Length, () => Task.FromResult(pdf.Length / 3000 + 1));
        documents.Record("receipt", "ok", TimeSpan.FromMilliseconds(120), sizeBytes: 2_048);
        // </snippet:documents>
        return pages;
    }

    public static async Task<string> Dashboard(DashboardDataService dashboard)
    {
        // <snippet:dashboard>
        DashboardData data = await dashboard.GetAsync(TimeSpan.FromHours(1));
        string json = JsonSerializer.Serialize(data, DashboardJsonContext.Default.DashboardData);
        // </snippet:dashboard>
        return json;
    }
}
