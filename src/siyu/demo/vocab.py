"""The fixed vocabulary of the sandbox brand: sources, regions, tags, products, platforms.

The sandbox brand is 知了童学, a children's learning-materials seller: it mines Douyin comments
("求资料", "求电子版"), puts cashback cards into Taobao parcels, runs a Douyin live room, hands
out flyers at family fairs and grows by referral. Everything here is plain data; the weights
are the generator's knobs.
"""

from __future__ import annotations

from siyu.customers.models import Stage
from siyu.events.vocabulary import EventType

BRAND_NAME = "知了童学"
DAY = 86_400

# (code, remark word, share of arrivals). Codes are the `source` stored on customers.
SOURCES: tuple[tuple[str, str, float], ...] = (
    ("douyin_comment", "抖音评论", 0.36),
    ("taobao_parcel_card", "淘宝包裹卡", 0.24),
    ("live_room", "直播间", 0.14),
    ("offline_flyer", "线下传单", 0.11),
    ("referral", "老带新", 0.15),
)
SOURCE_CODES = tuple(s[0] for s in SOURCES)
SOURCE_LABELS = tuple(s[1] for s in SOURCES)
DOUYIN, TAOBAO, LIVE, FLYER, REFERRAL = range(5)

# What the customer asked for when they arrived, per source: (intent, weight).
INTENTS: tuple[tuple[tuple[str, float], ...], ...] = (
    (("求资料", 0.35), ("求电子版", 0.2), ("多少钱", 0.2), ("怎么买", 0.15), ("求链接", 0.1)),
    (("领返现", 0.7), ("售后咨询", 0.15), ("领优惠券", 0.15)),
    (("直播福利", 0.5), ("咨询课程", 0.3), ("求回放", 0.2)),
    (("领试听课", 0.6), ("领资料包", 0.4)),
    (("朋友推荐", 0.7), ("拼团", 0.3)),
)

# Share of each source's contacts that a WeCom member adds (the rest go to personal WeChat).
WECOM_SHARE = (0.8, 0.85, 0.7, 0.35, 0.4)

# Hour-of-day arrival profile (Asia/Shanghai) per source; normalised by the generator.
_EVERYDAY = (6, 3, 2, 1, 1, 2, 5, 12, 20, 25, 26, 28, 32, 30, 26, 24, 24, 25, 28, 34, 42, 46, 38, 20)
HOUR_PROFILES: tuple[tuple[float, ...], ...] = (
    _EVERYDAY,
    (2, 1, 0, 0, 0, 0, 1, 4, 8, 12, 14, 16, 22, 20, 16, 14, 14, 16, 20, 26, 30, 30, 24, 10),
    (3, 1, 0, 0, 0, 0, 0, 0, 1, 2, 2, 2, 3, 3, 2, 2, 2, 3, 6, 30, 60, 70, 50, 12),
    (0, 0, 0, 0, 0, 0, 0, 1, 3, 10, 18, 20, 16, 14, 16, 18, 20, 16, 10, 6, 2, 1, 0, 0),
    _EVERYDAY,
)

DOUYIN_VIDEOS = (
    "3岁娃识字300个的秘密",
    "幼小衔接到底要准备什么",
    "英语启蒙别再走弯路",
    "孩子专注力差怎么办",
    "一张表搞定暑假计划",
    "数学思维从玩开始",
    "古诗词这样背孩子不抗拒",
    "绘本怎么读才有效",
    "拼音总是混淆？试试这个",
    "一年级家长必看清单",
    "睡前10分钟亲子阅读",
    "孩子写作业拖拉的解法",
)
FLYER_VENUES = ("万达广场亲子节", "社区早教中心", "图书馆周末活动", "商场儿童乐园", "幼儿园开放日", "书展")

# (province, weight, cities): weights follow population and online-shopping activity.
REGIONS: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("广东省", 12, ("广州市", "深圳市", "东莞市", "佛山市")),
    ("浙江省", 8, ("杭州市", "宁波市", "温州市")),
    ("江苏省", 8, ("南京市", "苏州市", "无锡市")),
    ("山东省", 7, ("济南市", "青岛市", "烟台市")),
    ("河南省", 6, ("郑州市", "洛阳市")),
    ("四川省", 6, ("成都市", "绵阳市")),
    ("湖北省", 5, ("武汉市", "宜昌市")),
    ("湖南省", 5, ("长沙市", "株洲市")),
    ("河北省", 5, ("石家庄市", "保定市")),
    ("福建省", 4, ("福州市", "厦门市", "泉州市")),
    ("上海市", 4, ("",)),
    ("北京市", 4, ("",)),
    ("安徽省", 4, ("合肥市", "芜湖市")),
    ("陕西省", 3, ("西安市",)),
    ("重庆市", 3, ("",)),
    ("辽宁省", 3, ("沈阳市", "大连市")),
    ("江西省", 3, ("南昌市", "赣州市")),
    ("广西壮族自治区", 3, ("南宁市", "桂林市")),
    ("云南省", 2, ("昆明市",)),
    ("天津市", 2, ("",)),
    ("山西省", 2, ("太原市",)),
    ("黑龙江省", 2, ("哈尔滨市",)),
    ("吉林省", 1.5, ("长春市",)),
    ("贵州省", 1.5, ("贵阳市",)),
    ("新疆维吾尔自治区", 1, ("乌鲁木齐市",)),
)

# Real mainland mobile number segments (China Mobile, China Unicom, China Telecom).
MOBILE_PREFIXES = (
    134,
    135,
    136,
    137,
    138,
    139,
    147,
    150,
    151,
    152,
    157,
    158,
    159,
    172,
    178,
    182,
    183,
    184,
    187,
    188,
    195,
    198,
    130,
    131,
    132,
    145,
    155,
    156,
    166,
    175,
    176,
    185,
    186,
    196,
    133,
    149,
    153,
    173,
    177,
    180,
    181,
    189,
    190,
    191,
    193,
    199,
)

# Tag groups in display order. Group names are what operators see in the console.
TAG_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("意向", ("高", "中", "低")),
    ("痛点", ("识字量少", "专注力差", "英语启蒙难", "数学思维弱", "没时间辅导")),
    ("来源", SOURCE_LABELS),
    ("身份", ("宝妈", "宝爸", "上班族", "学生", "教师")),
    ("活动", ("大促活动", "直播专场", "21天训练营")),
)
PAIN_WEIGHTS = (0.3, 0.22, 0.2, 0.16, 0.12)

# (sku, name, price fen, cost fen), cheapest first: the spend model snaps onto these.
PRODUCTS: tuple[tuple[str, str, int, int], ...] = (
    ("ZL-CARD-01", "古诗词认读卡片", 2990, 800),
    ("ZL-BOOK-06", "幼小衔接练习册(全套6册)", 5990, 1500),
    ("ZL-TOY-01", "专注力训练教具套装", 15900, 4500),
    ("ZL-BOOK-30", "英语启蒙分级绘本(30册)", 19900, 6000),
    ("ZL-CAMP-21", "数学思维训练营(21天)", 29900, 3000),
    ("ZL-PEN-01", "点读笔+配套资源", 39900, 18000),
    ("ZL-VIP-12", "年度会员(全品类资源)", 69900, 5000),
)

PLATFORMS = ("taobao", "douyin", "wechat_mini_program")
TAOBAO_PLATFORM, DOUYIN_PLATFORM, WECHAT_PLATFORM = range(3)
# Platform of a customer's first order after joining, per source (taobao, douyin, wechat);
# repeat orders move into the private domain's own mini program, which is the point of it.
FIRST_ORDER_PLATFORM = (
    (0.0, 0.45, 0.55),
    (0.45, 0.0, 0.55),
    (0.0, 0.75, 0.25),
    (0.05, 0.05, 0.9),
    (0.05, 0.1, 0.85),
)
REPEAT_ORDER_PLATFORM = (0.1, 0.12, 0.78)
REFUND_RATE = (0.06, 0.15, 0.04)

# The product's event vocabulary (siyu.events.vocabulary), in the order the generator's kinds index it;
# at equal times a customer's events sort by kind, so customer_added comes before its follow_started.
EVENT_TYPES = tuple(
    t.value
    for t in (
        EventType.customer_added,
        EventType.follow_started,
        EventType.lead_commented,
        EventType.live_viewed,
        EventType.message_sent,
        EventType.message_received,
        EventType.link_clicked,
        EventType.group_joined,
        EventType.survey_answered,
        EventType.order_paid,
        EventType.order_refunded,
        EventType.follow_ended,
    )
)
(
    CUSTOMER_ADDED,
    FOLLOW_STARTED,
    COMMENT,
    VIEWED_LIVE,
    MSG_SENT,
    MSG_RECEIVED,
    CLICKED,
    JOINED_GROUP,
    SURVEY,
    ORDER,
    REFUND,
    FOLLOW_ENDED,
) = range(len(EVENT_TYPES))
# Events by which a customer shows interest after joining (vocabulary.ENGAGING).
INTERACTIONS = (VIEWED_LIVE, MSG_RECEIVED, CLICKED, JOINED_GROUP, SURVEY)
#: follow_ended's `by`, indexed by the `ref` of a FOLLOW_ENDED event (1: the customer, 2: staff).
ENDED_BY = ("", "customer", "staff")

#: The product's stages (customers.models.Stage), in the order World.customers.stage indexes them.
STAGES = tuple(s.value for s in Stage)
GENDERS = ("unknown", "male", "female")
IDENTITY_KINDS = ("mobile", "wecom_external_userid", "douyin_open_id", "taobao_buyer_nick")
ACCOUNT_KINDS = ("wecom_member", "personal_wechat")
FOLLOW_STATUSES = ("active", "deleted_by_customer", "deleted_by_staff")
