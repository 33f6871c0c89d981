#include "daemon/status_page.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "admin/admin_util.h"
#include "admin/status_check.h"

namespace lorry::daemon {

namespace {

using nlohmann::json;

std::string Escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string Str(const json& j, const char* key, const std::string& none = "-") {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return none;
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

// 0..1 for the progress bar.
double Fraction(const json& t) {
  std::string state = Str(t, "state");
  if (state == "ready" || state == "catching_up") return 1;
  if (state != "copying") return 0;
  auto est = t.find("bytes_estimate");
  if (est == t.end() || !est->is_number() || est->get<double>() <= 0) return 0;
  return std::min(0.99, t.at("bytes_copied").get<double>() / est->get<double>());
}

std::string TableRow(const json& t) {
  double f = Fraction(t);
  std::string eta;
  if (auto it = t.find("copy_seconds_left"); it != t.end() && it->is_number())
    eta = fmt::format("~{:.0f} s", it->get<double>());
  std::string rate;
  if (auto it = t.find("copy_bytes_per_second"); it != t.end() && it->is_number() && Str(t, "state") == "copying")
    rate = admin::HumanBytes(static_cast<int64_t>(it->get<double>())) + "/s";
  std::string rows = Str(t, "rows_copied", "0");
  if (t.contains("rows_estimate") && t.at("rows_estimate").is_number() && Str(t, "state") == "copying")
    rows += " / ~" + t.at("rows_estimate").dump();
  return fmt::format(
      "<tr data-table=\"{0}\" data-state=\"{1}\"><td>{0}</td><td><span class=\"st st-{1}\">{1}</span></td>"
      "<td class=\"num\">{2}</td><td><div class=\"bar\" data-fraction=\"{3:.4f}\"><div style=\"width:{4:.1f}%\">"
      "</div></div><span class=\"pct\">{4:.0f}%</span></td><td class=\"num\">{5}</td><td class=\"num\">{6}</td>"
      "<td class=\"err\">{7}</td></tr>",
      Escape(Str(t, "name")), Escape(Str(t, "state")), Escape(rows), f, f * 100, Escape(rate), Escape(eta),
      Escape(Str(t, "error", "")));
}

// The lag chart (seconds), drawn the same way by the script.
std::string Chart(const json& history) {
  std::string points;
  double max = 1, t0 = 0, t1 = 0;
  if (!history.empty()) {
    t0 = history.front().at(0).get<double>();
    t1 = history.back().at(0).get<double>();
  }
  for (const auto& p : history)
    if (p.at(2).is_number()) max = std::max(max, p.at(2).get<double>());
  double span = std::max(60.0, t1 - t0);
  for (const auto& p : history) {
    if (!p.at(2).is_number()) continue;
    double x = 600 * (p.at(0).get<double>() - t0) / span;
    double y = 110 - 100 * p.at(2).get<double>() / max;
    points += fmt::format("{:.1f},{:.1f} ", x, y);
  }
  return fmt::format(
      "<div class=\"scale\">top: <span id=\"chart-max\">{:.1f} s</span></div>"
      "<svg id=\"chart\" viewBox=\"0 0 600 120\" preserveAspectRatio=\"none\" role=\"img\" "
      "aria-label=\"lag in seconds\"><line x1=\"0\" y1=\"110\" x2=\"600\" y2=\"110\" class=\"axis\"/>"
      "<polyline id=\"chart-line\" points=\"{}\" vector-effect=\"non-scaling-stroke\"/></svg>",
      max, points);
}

constexpr const char* kStyle = R"css(
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:center}
header h1{font-size:18px;margin:0}
main{padding:12px 20px;display:grid;gap:14px}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:10px 14px}
h2{font-size:15px;margin:0 0 8px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:3px 14px;margin:0}
dt{color:#5b6578}dd{margin:0;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef0f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.err{color:#b42318}
.badge{padding:2px 10px;border-radius:10px;font-weight:600}
.OK{background:#12b76a}.WARNING{background:#f79009}.CRITICAL{background:#d92d20}.UNKNOWN{background:#667085}
.st{padding:1px 7px;border-radius:8px;background:#eef0f4}.st-ready{background:#d1fadf}
.st-copying,.st-catching_up{background:#fef0c7}.st-error{background:#fee4e2}
.bar{display:inline-block;width:140px;height:10px;background:#eef0f4;border-radius:5px;vertical-align:middle}
.bar div{height:100%;background:#2e90fa;border-radius:5px}.pct{margin-left:6px}
svg{width:100%;height:120px}polyline{fill:none;stroke:#2e90fa;stroke-width:2}.axis{stroke:#98a2b3}
.scale{color:#5b6578;font-size:12px}#problem:empty{display:none}footer{padding:0 20px 16px;color:#5b6578}
)css";

// Redraws from /status.json and /run.json; the same elements and classes
// as the server renders.
constexpr const char* kScript = R"js(
(function(){
var q=location.search;
function $(id){return document.getElementById(id)}
function txt(id,v){var e=$(id);if(e)e.textContent=(v===null||v===undefined||v==='')?'-':v}
function bytes(b){if(!(b>0))b=0;if(b<10240)return Math.floor(b)+' bytes';var u=['kB','MB','GB'],v=b/1024;for(var i=0;i<3;i++){if(v<1024)return v.toFixed(1)+' '+u[i];v/=1024}return v.toFixed(1)+' TB'}
function frac(t){if(t.state==='ready'||t.state==='catching_up')return 1;if(t.state!=='copying'||!(t.bytes_estimate>0))return 0;return Math.min(0.99,t.bytes_copied/t.bytes_estimate)}
function state(r){var s=r.subscription;return s.state}
function row(t){var tr=document.createElement('tr');tr.dataset.table=t.name;tr.dataset.state=t.state;
 var f=frac(t),rows=String(t.rows_copied)+(t.state==='copying'&&t.rows_estimate!==null?' / ~'+t.rows_estimate:'');
 var cells=[t.name,null,rows,null,t.state==='copying'&&t.copy_bytes_per_second?bytes(t.copy_bytes_per_second)+'/s':'',t.copy_seconds_left!==null?'~'+Math.round(t.copy_seconds_left)+' s':'',t.error||''];
 cells.forEach(function(c,i){var td=document.createElement('td');
  if(i===1){var s=document.createElement('span');s.className='st st-'+t.state;s.textContent=t.state;td.appendChild(s)}
  else if(i===3){var b=document.createElement('div');b.className='bar';b.dataset.fraction=f.toFixed(4);var d=document.createElement('div');d.style.width=(f*100).toFixed(1)+'%';b.appendChild(d);td.appendChild(b);var p=document.createElement('span');p.className='pct';p.textContent=Math.round(f*100)+'%';td.appendChild(p)}
  else td.textContent=c;
  if(i===2||i===4||i===5)td.className='num';if(i===6)td.className='err';tr.appendChild(td)});return tr}
function drawReport(r){var s=r.subscription;
 var st=$('state');st.textContent=s.state;st.dataset.state=s.state;
 var h=$('health');h.textContent=r.check.state;h.className='badge '+r.check.state;h.title=r.check.line;
 txt('check',r.check.line.split(' | ')[0]);
 txt('provider',s.provider_reachable?s.provider:'unreachable: '+s.provider_error);txt('subscriber',s.subscriber);
 txt('run',s.run_active?'active'+(s.run_holder?' ('+s.run_holder+')':''):'not running');
 txt('standby',s.standby?('pid '+s.standby.pid+' on '+s.standby.host+' since '+s.standby.since):'none');
 txt('applied-lsn',s.applied_lsn);txt('provider-lsn',s.provider_lsn);
 var lag=$('lag');lag.dataset.lagBytes=s.lag_bytes===null?'':s.lag_bytes;lag.dataset.lagSeconds=s.lag_seconds===null?'':s.lag_seconds;
 lag.textContent=s.lag_bytes===null?'unknown':bytes(s.lag_bytes)+', '+(s.lag_seconds===null?'?':s.lag_seconds.toFixed(1))+' s';
 txt('applied',s.xacts_applied+' transactions, '+s.changes_applied+' changes');
 txt('slot',s.slot_state?(s.slot_state.exists?(s.slot_state.active?'active':'inactive')+(s.slot_state.retained_bytes!==null?', keeps '+bytes(s.slot_state.retained_bytes)+' of WAL':''):'not created yet'):'unknown');
 txt('last-error',s.last_error?s.last_error+' (at '+s.last_error_at+')':'none');
 var tb=$('tables');while(tb.firstChild)tb.removeChild(tb.firstChild);r.tables.forEach(function(t){tb.appendChild(row(t))});
 document.title='lorry '+s.name+' \u2014 '+s.state}
function drawRun(j){var p=$('phase');p.textContent=j.phase+(j.detail?': '+j.detail:'');p.dataset.phase=j.phase;
 txt('conflicts',j.conflicts.missing_row+' rows missing for UPDATE/DELETE (since this run started)');
 var e=[];for(var k in j.errors)e.push(k+': '+j.errors[k]);txt('errors',e.length?e.join(', '):'none');
 var hs=j.history,pts='',max=1;if(hs.length){var t0=hs[0][0],span=Math.max(60,hs[hs.length-1][0]-t0);
 hs.forEach(function(h){if(h[2]!==null&&h[2]>max)max=h[2]});
 hs.forEach(function(h){if(h[2]!==null)pts+=(600*(h[0]-t0)/span).toFixed(1)+','+(110-100*h[2]/max).toFixed(1)+' '})}
 $('chart-line').setAttribute('points',pts);$('chart-max').textContent=max.toFixed(1)+' s'}
function poll(){
 fetch('/status.json'+q,{cache:'no-store'}).then(function(r){return r.ok?r.json():r.text().then(function(t){throw new Error(t)})})
  .then(function(r){drawReport(r);$('problem').textContent='';txt('updated',new Date().toLocaleTimeString())})
  .catch(function(e){$('problem').textContent=String(e.message||e)});
 fetch('/run.json',{cache:'no-store'}).then(function(r){return r.json()}).then(drawRun).catch(function(){})}
poll();setInterval(poll,2000)})();
)js";

}  // namespace

std::optional<json> OnlyTable(const json& report, const std::string& table) {
  json out = report;
  json kept = json::array();
  for (const auto& t : report.at("tables"))
    if (Str(t, "name") == table || Str(t, "table") == table) kept.push_back(t);
  if (kept.size() != 1) return std::nullopt;
  out["tables"] = kept;
  return out;
}

json RunJson(const RunHealth::View& health, const metrics::Snapshot& snapshot,
             const std::map<std::string, int64_t>& errors, const std::deque<StatusSource::LagPoint>& history) {
  json h = json::array();
  for (const auto& p : history)
    h.push_back({p.unix_seconds, p.lag_bytes ? json(*p.lag_bytes) : json(nullptr),
                 p.lag_seconds ? json(*p.lag_seconds) : json(nullptr)});
  return {{"phase", RunPhaseName(health.phase)},
          {"detail", health.detail},
          {"phase_seconds", health.phase_seconds},
          {"since_alive_seconds", health.since_alive_seconds},
          {"streaming", snapshot.streamed},
          {"conflicts", {{"missing_row", snapshot.position.missing_rows}}},
          {"errors", errors},
          {"reconnects", snapshot.reconnects},
          {"history", h}};
}

std::string RenderStatusPage(const json* report, const std::string& error, const json& run,
                             const std::string& table) {
  std::string name = "?", state = "unknown", check_state = "UNKNOWN", check_line = error;
  json sub = json::object();
  std::string rows;
  if (report != nullptr) {
    sub = report->at("subscription");
    name = Str(sub, "name");
    state = Str(sub, "state");
    check_state = report->at("check").at("state").get<std::string>();
    check_line = report->at("check").at("line").get<std::string>();
    for (const auto& t : report->at("tables")) rows += TableRow(t);
  }
  std::string lag = "unknown";
  if (sub.contains("lag_bytes") && sub.at("lag_bytes").is_number())
    lag = admin::HumanBytes(sub.at("lag_bytes").get<int64_t>()) + ", " +
          (sub.at("lag_seconds").is_number() ? fmt::format("{:.1f} s", sub.at("lag_seconds").get<double>()) : "?");
  std::string slot = "unknown";
  if (sub.contains("slot_state") && sub.at("slot_state").is_object()) {
    const json& ss = sub.at("slot_state");
    slot = !ss.value("exists", false) ? "not created yet" : ss.value("active", false) ? "active" : "inactive";
    if (ss.value("exists", false) && ss.at("retained_bytes").is_number())
      slot += ", keeps " + admin::HumanBytes(ss.at("retained_bytes").get<int64_t>()) + " of WAL";
  }
  std::string standby = "none";
  if (sub.contains("standby") && sub.at("standby").is_object())
    standby = fmt::format("pid {} on {} since {}", sub.at("standby").at("pid").dump(), Str(sub.at("standby"), "host"),
                          Str(sub.at("standby"), "since"));
  std::string errors;
  for (const auto& [kind, n] : run.at("errors").items()) errors += (errors.empty() ? "" : ", ") + kind + ": " + n.dump();
  std::string run_text = sub.value("run_active", false)
                             ? "active" + (Str(sub, "run_holder", "").empty() ? "" : " (" + Str(sub, "run_holder") + ")")
                             : "not running";
  std::string last_error = Str(sub, "last_error", "");
  std::string phase = run.at("phase").get<std::string>();
  std::string detail = run.at("detail").get<std::string>();

  std::string html = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">";
  html += "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">";
  html += fmt::format("<title>lorry {} \u2014 {}</title><style>{}</style></head><body>\n", Escape(name),
                      Escape(state), kStyle);
  html += fmt::format(
      "<header><h1>lorry <span id=\"sub\">{}</span></h1><span id=\"state\" data-state=\"{}\">{}</span>"
      "<span id=\"health\" class=\"badge {}\" title=\"{}\">{}</span><span id=\"phase\" data-phase=\"{}\">{}</span>"
      "</header>\n<main>\n",
      Escape(name), Escape(state), Escape(state), Escape(check_state), Escape(check_line), Escape(check_state),
      Escape(phase), Escape(phase + (detail.empty() ? "" : ": " + detail)));
  html += fmt::format("<p id=\"problem\" class=\"err\">{}</p>\n", Escape(report == nullptr ? error : ""));
  auto dd = [](const char* id, const std::string& label, const std::string& value, const std::string& attrs = "") {
    return fmt::format("<dt>{}</dt><dd id=\"{}\"{}>{}</dd>", label, id, attrs, Escape(value));
  };
  html += "<section><h2>Subscription</h2><dl>";
  html += dd("check", "health", check_line.substr(0, check_line.find(" | ")));
  html += dd("provider", "provider",
             sub.value("provider_reachable", true) ? Str(sub, "provider") : "unreachable: " + Str(sub, "provider_error"));
  html += dd("subscriber", "subscriber", Str(sub, "subscriber"));
  html += dd("run", "run", run_text);
  html += dd("standby", "standby", standby);
  html += dd("slot", "slot", slot);
  html += dd("applied-lsn", "applied LSN", Str(sub, "applied_lsn"));
  html += dd("provider-lsn", "provider LSN", Str(sub, "provider_lsn"));
  html += dd("lag", "lag", lag,
             fmt::format(" data-lag-bytes=\"{}\" data-lag-seconds=\"{}\"", Escape(Str(sub, "lag_bytes", "")),
                         Escape(Str(sub, "lag_seconds", ""))));
  html += dd("applied", "applied",
             fmt::format("{} transactions, {} changes", Str(sub, "xacts_applied", "0"), Str(sub, "changes_applied", "0")));
  html += "</dl></section>\n";
  html += "<section><h2>Lag (seconds), last 15 minutes</h2>" + Chart(run.at("history")) + "</section>\n";
  html += fmt::format(
      "<section><h2>Tables{}</h2><table><thead><tr><th>table</th><th>state</th><th>rows</th><th>copy</th>"
      "<th>rate</th><th>left</th><th>error</th></tr></thead><tbody id=\"tables\">{}</tbody></table></section>\n",
      table.empty() ? "" : " (only " + Escape(table) + ", <a href=\"/\">all</a>)", rows);
  html += "<section><h2>Errors and conflicts</h2><dl>";
  html += dd("last-error", "last error", last_error.empty() ? "none" : last_error + " (at " + Str(sub, "last_error_at") + ")");
  html += dd("errors", "failures (this run)", errors.empty() ? "none" : errors);
  html += dd("conflicts", "conflicts",
             fmt::format("{} rows missing for UPDATE/DELETE (since this run started)",
                         run.at("conflicts").at("missing_row").dump()));
  html += "</dl></section>\n</main>\n";
  html += "<footer>updated <span id=\"updated\">at load</span> \u00b7 <a href=\"/status.json\">status.json</a> "
          "(as <code>lorry status --json</code>) \u00b7 <a href=\"/run.json\">run.json</a> \u00b7 "
          "<a href=\"/metrics\">metrics</a> \u00b7 <a href=\"/readyz\">readyz</a></footer>\n";
  html += std::string("<script>") + kScript + "</script>\n</body></html>\n";
  return html;
}

}  // namespace lorry::daemon
