using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Monitoring.Stream.Hosting.Http;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Hosting.Tests.Support;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Tests.Http;

public class HttpRequestMetricsTests
{
    private const long T0 = EngineFixture.T0;

    private static async Task<(WebApplication App, HttpClient Client)> StartAsync(EngineFixture engine, HttpMetricsOptions options)
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel().UseUrls("http://127.0.0.1:0");
        WebApplication app = builder.Build();
        app.UseMiddleware<HttpRequestMetrics>(engine.Collector, options);
        app.MapGet("/users/{id}/orders", (string id) => Results.Ok(id));
        app.MapPost("/documents", () => Results.Created("/documents/1", null));
        app.MapGet("/items/{id:int}", (int id) => id > 100 ? Results.NotFound() : Results.Ok(id));
        app.MapGet("/boom", string () => throw new InvalidOperationException("handler failed"));
        await app.StartAsync();
        string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        return (app, new HttpClient { BaseAddress = new Uri(address), Timeout = TimeSpan.FromSeconds(10) });
    }

    [Fact]
    public async Task Requests_ThreeRoutesWithUserIds_ExactCountsPerRouteAndStatusAndNoSeriesPerId()
    {
        await using var engine = new EngineFixture(nowUnixMs: T0 + 1_000);
        (WebApplication app, HttpClient client) = await StartAsync(engine, new HttpMetricsOptions());
        await using (app)
        using (client)
        {
            for (int i = 0; i < 30; i++)
            {
                Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/users/user-{Guid.NewGuid():N}/orders")).StatusCode);
            }

            for (int i = 0; i < 10; i++)
            {
                Assert.Equal(HttpStatusCode.Created, (await client.PostAsync("/documents", null)).StatusCode);
            }

            for (int i = 0; i < 12; i++)
            {
                await client.GetAsync($"/items/{(i < 8 ? i : 1000 + i)}");
            }

            for (int i = 0; i < 3; i++)
            {
                Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/no/such/{i}")).StatusCode);
            }

            Assert.Equal(HttpStatusCode.InternalServerError, (await client.GetAsync("/boom")).StatusCode);
            await app.StopAsync();
        }

        await engine.StopAsync();

        var from = DateTimeOffset.FromUnixTimeMilliseconds(T0);
        IReadOnlyList<GroupedStatistics> groups = engine.Queries.GetGrouped(HttpRequestMetrics.DurationMetric, LabelSet.Empty,
            ["method", "route", "status_code"], from, from.AddMinutes(1));
        var counts = groups.ToDictionary(g => $"{g.Group.GetValue("method")} {g.Group.GetValue("route")} {g.Group.GetValue("status_code")}", g => g.Statistics.Count);
        Assert.Equal(new Dictionary<string, long>
        {
            ["GET /users/{id}/orders 200"] = 30,
            ["POST /documents 201"] = 10,
            ["GET /items/{id:int} 200"] = 8,
            ["GET /items/{id:int} 404"] = 4,
            ["GET unmatched 404"] = 3,
            ["GET /boom 500"] = 1,
        }, counts);
        Assert.Equal(6, engine.Pipeline.Registry.GetSeriesCount(HttpRequestMetrics.DurationMetric));
        MetricStatistics? errors = engine.Queries.GetMatching(HttpRequestMetrics.DurationMetric, LabelSet.Create(new Label("status_class", "4xx")), from, from.AddMinutes(1));
        Assert.Equal(7, errors!.Count);
    }

    [Fact]
    public async Task Requests_RawPathOptIn_PathBecomesALabel()
    {
        await using var engine = new EngineFixture(nowUnixMs: T0 + 1_000);
        (WebApplication app, HttpClient client) = await StartAsync(engine, new HttpMetricsOptions { IncludeRawPath = true });
        await using (app)
        using (client)
        {
            await client.GetAsync("/users/1/orders");
            await client.GetAsync("/users/2/orders");
            await app.StopAsync();
        }

        await engine.StopAsync();

        Assert.Equal(2, engine.Pipeline.Registry.GetSeriesCount(HttpRequestMetrics.DurationMetric));
    }

    [Theory]
    [InlineData("get", "GET")]
    [InlineData("PURGE", "_OTHER")]
    [InlineData("DELETE", "DELETE")]
    public void NormalizeMethod_UnknownMethods_Folded(string method, string expected) =>
        Assert.Equal(expected, HttpRequestMetrics.NormalizeMethod(method));
}
